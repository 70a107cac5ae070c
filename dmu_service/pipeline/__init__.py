"""Streaming ingestion pipeline: read -> normalize -> language id -> quality rules -> dedup -> tokenize."""
