"""The two evaluation protocols: which rows go to train, valid and test.

* ``session``: the most recent 10% of training sessions (``N // 10``) are
  validation; every prefix of a session is a case; published test cases are kept
  as they are. Session ids are 1, 2, ... over training then test sessions, in time
  order.
* ``leave-one-out``: per user with at least 3 items, the last item is the test
  target and the second-last the validation target; training has every prefix of
  the rest. SASRec's own split (``data_partition``) keeps a user with fewer than 3
  items in training only, with no validation or test target: a user with 2 items
  gives one training row, a user with 1 item none (nothing precedes the item). Their
  items stay in the catalogue (``NAME.item``): they are ranked, and drawn as
  negatives, like every other item. User ids are the source's own.

Both return the counts that go into the manifest.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.convert.inter_files import InterFile, tokens, write_items
from bench.convert.sequences import SessionData, UserData

SESSION, LEAVE_ONE_OUT = "session", "leave-one-out"
UID_FIELD = {SESSION: "session_id", LEAVE_ONE_OUT: "user_id"}
SPLITS = ("train", "valid", "test")
MIN_LOO_LENGTH = 3  # a user needs a training item, a validation target and a test target


def _open(folder: Path, name: str, protocol: str, max_len: int) -> dict[str, InterFile]:
    return {split: InterFile(folder / f"{name}.{split}.inter", UID_FIELD[protocol], max_len) for split in SPLITS}


def _close(files: dict[str, InterFile]) -> dict[str, int]:
    for f in files.values():
        f.close()
    return {f"num_{split}_cases": f.rows for split, f in files.items()}


def write_session(data: SessionData, folder: Path, name: str, max_len: int) -> dict[str, int]:
    """Write the session-protocol ``.inter`` files; return the manifest counts."""
    train, test = data.train, data.test
    n_train, n_valid = len(train), len(train) // 10
    files = _open(folder, name, SESSION, max_len)
    try:
        train_tokens = tokens(train.items)
        for i in range(n_train):
            seq = train_tokens[train.offsets[i]:train.offsets[i + 1]]
            split = "valid" if i >= n_train - n_valid else "train"
            files[split].add_prefixes(str(i + 1), seq, 1, len(seq))
        if data.test_cases is not None:
            prefixes, labels, session_of = data.test_cases
            for prefix, label, session in zip(prefixes, labels, session_of):
                files["test"].add_case(str(n_train + 1 + session), prefix, label)
            targets = np.asarray(labels, dtype=np.int64)
        else:
            test_tokens = tokens(test.items)
            for j in range(len(test)):
                seq = test_tokens[test.offsets[j]:test.offsets[j + 1]]
                files["test"].add_prefixes(str(n_train + 1 + j), seq, 1, len(seq))
            not_first = np.ones(len(test.items), dtype=bool)
            not_first[test.offsets[:-1]] = False
            targets = test.items[not_first]
    finally:
        counts = _close(files)
    all_items = np.concatenate([train.items, test.items])
    write_items(folder / f"{name}.item", all_items)
    return counts | {
        "num_items": int(len(np.unique(all_items))),
        "num_interactions": int(len(all_items)),
        "num_sequences": n_train + len(test),
        "num_train_sequences": n_train,
        "num_valid_sequences": n_valid,
        "num_test_sequences": len(test),
        "num_test_targets_unseen_in_train": int((~np.isin(targets, train.items)).sum()),
    }


def evaluated_users(data: UserData) -> np.ndarray:
    """Indices of the users that get a validation and a test case."""
    return np.flatnonzero(data.sequences.lengths >= MIN_LOO_LENGTH)


def write_leave_one_out(data: UserData, folder: Path, name: str, max_len: int) -> dict[str, int]:
    """Write the leave-one-out ``.inter`` files; return the manifest counts."""
    seqs = data.sequences
    lengths = seqs.lengths
    files = _open(folder, name, LEAVE_ONE_OUT, max_len)
    try:
        all_tokens = tokens(seqs.items)
        for u, user in enumerate(tokens(data.users)):
            seq = all_tokens[seqs.offsets[u]:seqs.offsets[u + 1]]
            n = len(seq)
            if n >= MIN_LOO_LENGTH:
                files["train"].add_prefixes(user, seq, 1, n - 2)
                files["valid"].add_prefixes(user, seq, n - 2, n - 1)
                files["test"].add_prefixes(user, seq, n - 1, n)
            else:
                files["train"].add_prefixes(user, seq, 1, n)
    finally:
        counts = _close(files)
    write_items(folder / f"{name}.item", seqs.items)
    evaluated = lengths >= MIN_LOO_LENGTH
    is_test_target = np.zeros(len(seqs.items), dtype=bool)
    is_test_target[seqs.offsets[1:][evaluated] - 1] = True
    seen = seqs.items[~is_test_target]  # training and validation items
    n_evaluated = int(evaluated.sum())
    return counts | {
        "num_items": int(len(np.unique(seqs.items))),
        "num_interactions": int(len(seqs.items)),
        "num_sequences": len(seqs),
        # Users whose events train a model (training or validation rows).
        "num_train_sequences": int((lengths >= 2).sum()),
        "num_valid_sequences": n_evaluated,
        "num_test_sequences": n_evaluated,
        "num_test_targets_unseen_in_train": int((~np.isin(seqs.items[is_test_target], seen)).sum()),
    }
