"""NerveWatch common plumbing: settings, Kafka, PostgreSQL, HTTP, metrics, logging, identity."""
