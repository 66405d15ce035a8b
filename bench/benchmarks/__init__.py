"""Timing scripts, run as ``python -m bench.benchmarks.<name>``; timing stays out of the tests."""
