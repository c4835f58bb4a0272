"""Helpers the KCL integration test runs as child processes."""
