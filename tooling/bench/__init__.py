"""Benchmarks (`nervewatch bench`).

run orchestrates, load generates load, proc starts the processes, fhir measures the FHIR API."""
