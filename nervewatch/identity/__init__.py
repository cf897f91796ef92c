"""Tenants, API keys and the access audit: platform identity shared by every service (schema `identity`).

Services only read tenants and keys (to authenticate requests and, for alerts, to sign webhooks) and
append to the access audit; keys and tenants are written by `nervewatch seed-dev`, `nervewatch tenants`
(`tenants_admin`) and the admin endpoints of the ingest service, which also purges audit rows past
their retention (`access_log`).
"""
