"""Search spaces and the Optuna-on-Ray tuner (`bench tune MODEL DATASET`).

* ``spaces/<model>.yaml``: one search space per tunable model; :mod:`hyper.space`
  checks and samples them.
* :mod:`hyper.tune`: the command and the driver (Optuna study, Ray tasks, resume).
* :mod:`hyper.trial`: one trial inside a Ray worker (objective, pruning reports).
* :mod:`hyper.storage`: the study's durable storage and the trials' heartbeats.
* :mod:`hyper.report`: ``reports/tune-<dataset>-<model>.md`` and its plots.
* :mod:`hyper.best`: ``best/<dataset>/<model>.yaml``, the tuned parameters `bench run` uses.
* ``studies/``: the default SQLite studies (not committed).
"""
import bench.compat  # noqa: F401
