"""Which data the tested model of a run was fitted on: a run record's ``fit_protocol``.

A leaf module: the runner sets it and the report states it above every table.
"""

FIT_PROTOCOLS = {
    "train": "trained on the training rows, early-stopped on validation, tested as selected",
    "train+valid": "nothing to train by gradient: fitted on all training data (train + validation)",
    "refit": "early stopping on validation chose the epochs; retrained on train + validation for them",
}
