"""Integration tests that start real servers or daemons (marked slow)."""
