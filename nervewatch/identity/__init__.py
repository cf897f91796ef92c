"""Tenants and API keys: platform identity shared by every service (schema `identity`).

Services only read it (to authenticate requests and, for alerts, to sign webhooks); keys and
tenants are written by `nervewatch seed-dev` and the admin endpoints of the ingest service.
"""
