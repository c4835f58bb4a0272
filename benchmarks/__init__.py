"""The benchmark suite: ``python -m benchmarks [--quick] [--json]``; see benchmarks/README.md."""
