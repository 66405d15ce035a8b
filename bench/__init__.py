"""The benchmark harness: converters, RecBole glue, the evaluator, suites and reports."""
from bench import compat as _compat  # noqa: F401  (must run before any recbole import)
