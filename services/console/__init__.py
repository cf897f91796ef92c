"""The care-coordinator console: static browser app under /console/ and a /v1 proxy (one origin)."""
