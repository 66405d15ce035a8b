"""Row helpers shared by the harness and the models (a leaf module: numpy only).

Our models import nothing else from ``bench`` (but :mod:`bench.compat`): these names
describe the training rows the harness hands them.
"""
from __future__ import annotations

import numpy as np

LOSS_START_FIELD = "loss_start"  # per whole-sequence row: positions before it are context only
LOSS_MASK_FIELD = "loss_mask"  # per whole-sequence row [L] bool: the positions with a loss (iid_targets batches)


def sequence_events(train) -> tuple[np.ndarray, np.ndarray]:
    """Every item event of every training sequence, as ``(sequence ids, item ids)``.

    A sequence's events are its first item plus the target of each of its prefix rows;
    the first item is ``item_id_list[0]`` of its length-1 prefix (the converter writes
    every prefix). Counting these is exact even where ``item_id_list`` was truncated to
    ``max_len``. Works on RecBole's plain ``Dataset`` too (no ``item_length`` there).
    """
    inter = train.inter_feat
    uid, items = inter[train.uid_field].numpy(), inter[train.iid_field].numpy()
    lists = inter[train.iid_field + train.config["LIST_SUFFIX"]]
    first = ((lists != 0).sum(dim=1) == 1).numpy()  # lists are 0-padded at the end
    return np.concatenate([uid[first], uid]), np.concatenate([lists[first, 0].numpy(), items])
