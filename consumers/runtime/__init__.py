"""Runtimes that drive a batch handler: the amazon-kclpy processor shell and the in-process reader."""
