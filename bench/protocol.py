"""The evaluation protocols' shared facts (a leaf module: no imports).

* :data:`MAIN_METRIC`: the metric each protocol is judged by (significance tests in
  reports, ``bench tune``'s default objective);
* :data:`FIT_PROTOCOLS`: which data the tested model of a run was fitted on, a run
  record's ``fit_protocol``; the runner sets it and the report states it above every table.
"""

MAIN_METRIC = {"session": "mrr@20", "leave-one-out": "ndcg@10"}

FIT_PROTOCOLS = {
    "train": "trained on the training rows, early-stopped on validation, tested as selected",
    "train+valid": "nothing to train by gradient: fitted on all training data (train + validation)",
    "refit": "early stopping on validation chose the epochs; retrained on train + validation for them",
}
