"""Operator and developer tools: CLI, embedded dev stack, process supervisor, benchmarks.

Never imported by plumbing (nervewatch) or services."""
