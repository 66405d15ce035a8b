"""Search spaces and the Optuna-on-Ray tuner."""
import bench.compat  # noqa: F401
