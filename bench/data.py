"""Converted dataset -> RecBole config, dataset splits and evaluation cases.

This is the only place that turns a folder of ``dataset_atomic/`` into RecBole
objects, and it works around RecBole 1.2.1's faults on the way:

* ``Config`` reads ``sys.argv``: inside Ray workers (or pytest) the process arguments
  would land in the config, so they are hidden while it is built.
* Pre-split files: RecBole applies no filtering and no augmentation; the converter
  already did both (every training prefix is a row).
"""
from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np
import torch

import bench.compat  # noqa: F401
from bench.convert.protocols import LEAVE_ONE_OUT
from bench.errors import InputError
from bench.evaluator import CaseSet
from bench.rows import LOSS_MASK_FIELD, LOSS_START_FIELD, sequence_events  # noqa: F401  (the row helpers, a leaf)

if TYPE_CHECKING:  # a type only: importing the registry here would close data -> registry -> reference -> data
    from bench.registry import ModelSpec

DEFAULT_DATA_ROOT = Path("dataset_atomic")

HARNESS_DEFAULTS = Path(__file__).with_name("harness.yaml")


@contextlib.contextmanager
def _argv_hidden():
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def dataset_dir(name: str, data_root: str | Path = DEFAULT_DATA_ROOT) -> Path:
    return Path(data_root) / name


def read_manifest(name: str, data_root: str | Path = DEFAULT_DATA_ROOT) -> dict:
    path = dataset_dir(name, data_root) / "manifest.json"
    if not path.is_file():
        raise InputError(
            f"dataset {name!r} is not converted; make it with "
            f"`bench convert FORMAT SRC --name {name}` (--out {data_root} if not the default)",
            path,
        )
    return json.loads(path.read_text())


def make_config(spec: ModelSpec, dataset: str, overrides: dict | None = None,
                data_root: str | Path = DEFAULT_DATA_ROOT):
    """RecBole ``Config`` for ``spec`` on a converted dataset.

    Precedence (lowest first): RecBole's defaults and its own model YAML,
    ``bench/harness.yaml``, the dataset's YAML, our model's YAML, a variant's settings
    (``custom_models.VARIANTS``), then ``overrides``.
    """
    from recbole.config import Config

    folder = dataset_dir(dataset, data_root)
    manifest = read_manifest(dataset, data_root)  # clear error if not converted
    files = [str(HARNESS_DEFAULTS), str(folder / f"{dataset}.yaml"), *spec.config_files]
    config_dict = {**spec.settings, **(overrides or {}), "data_path": str(Path(data_root).resolve())}
    with _argv_hidden():
        try:
            config = Config(model=spec.cls, dataset=dataset, config_file_list=files, config_dict=config_dict)
        except ValueError as err:
            # RecBole's global default samples a negative per row, which its own sequential
            # CE models reject; unless the user asked for sampling, such a model gets none.
            if "when the loss_type is CE" not in str(err) or "train_neg_sample_args" in (overrides or {}):
                raise
            config_dict["train_neg_sample_args"] = None
            config = Config(model=spec.cls, dataset=dataset, config_file_list=files, config_dict=config_dict)
    if config["batch_unit"] == "auto":
        config["batch_unit"] = AUTO_BATCH_UNIT.get(manifest.get("protocol"), "targets")
    return config


#: ``batch_unit: auto`` (NARM's default) by protocol. Short sessions: prefixes drawn i.i.d.
#: learn as much per epoch as RecBole's rows, at +22% per step over whole sequences
#: (Diginetica, CPU). Long histories: whole sequences; i.i.d. prefixes there cost 8x
#: more per epoch (MovieLens-100k, 26.8 against 3.2 s), more than they gain per epoch.
AUTO_BATCH_UNIT = {"session": "iid_targets", "leave-one-out": "targets"}


@dataclass
class Splits:
    """A converted dataset loaded by RecBole, split as the converter wrote it."""

    config: object
    dataset: object  # the whole RecBole dataset (vocabularies, counts)
    train: object
    valid: object
    test: object
    manifest: dict
    negatives: torch.Tensor | None  # [num_users, n] internal item ids (leave-one-out)

    @property
    def protocol(self) -> str:
        return self.manifest["protocol"]

    def cases(self, split: str) -> CaseSet:
        # Leave-one-out test cases are also ranked without the user's seen items
        # (bench.evaluator); validation, which only selects epochs, ranks all items.
        seen = seen_before_test(self) if split == "test" and self.protocol == LEAVE_ONE_OUT else None
        return CaseSet(getattr(self, split), self.config["eval_batch_size"], self.negatives, seen)


def seen_before_test(splits: Splits) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indptr, items)``: for every user (internal id), the distinct items of their
    training rows and validation row, inputs and targets: everything the user interacted
    with before the test target (the converter writes every prefix, so long histories
    are covered too)."""
    uid_field, iid_field = splits.train.uid_field, splits.train.iid_field
    list_field = splits.config["ITEM_ID_FIELD"] + splits.config["LIST_SUFFIX"]
    users, items = [], []
    for part in (splits.train.inter_feat, splits.valid.inter_feat):
        history = part[list_field]
        users += [part[uid_field].view(-1, 1).expand_as(history).reshape(-1), part[uid_field]]
        items += [history.reshape(-1), part[iid_field]]
    users, items = torch.cat(users).long(), torch.cat(items).long()
    real = items > 0  # 0 pads the histories
    n_items = splits.dataset.item_num
    pairs = torch.unique(users[real] * n_items + items[real])  # sorted: by user, then item
    counts = torch.bincount(pairs // n_items, minlength=splits.dataset.user_num)
    indptr = torch.zeros(len(counts) + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(counts, 0)
    return indptr, pairs % n_items


def load_splits(config, data_root: str | Path = DEFAULT_DATA_ROOT) -> Splits:
    from recbole.data import create_dataset

    name = config["dataset"]
    manifest = read_manifest(name, data_root)
    dataset = create_dataset(config)
    train, valid, test = dataset.build()
    negatives = _load_negatives(dataset, dataset_dir(name, data_root) / f"{name}.negatives")
    return Splits(config, dataset, train, valid, test, manifest, negatives)


def _load_negatives(dataset, path: Path) -> torch.Tensor | None:
    """The converter's fixed negatives, mapped to RecBole's internal ids."""
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()[1:]
    uid_field, iid_field = dataset.uid_field, dataset.iid_field
    users = [line.split("\t", 1)[0] for line in lines]
    items = [line.split("\t", 1)[1].split() for line in lines]  # empty: a user who saw every item
    # A user of a catalogue smaller than ~100 items gets fewer negatives: their row is
    # padded with id 0, RecBole's padding item, which the evaluator never ranks.
    widths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    table = torch.zeros(dataset.num(uid_field), int(widths.max(initial=0)), dtype=torch.long)
    uids = np.repeat(dataset.token2id(uid_field, users), widths)
    columns = np.arange(widths.sum()) - np.repeat(np.cumsum(widths) - widths, widths)
    iids = dataset.token2id(iid_field, np.concatenate(items)) if widths.sum() else np.zeros(0, np.int64)
    table[torch.as_tensor(uids), torch.as_tensor(columns)] = torch.as_tensor(iids)
    return table


def train_and_valid(splits: Splits):
    """The training rows with the validation rows added: all of the training data.

    Session protocol: every training session, the most recent 10% included. Leave-one-out:
    every user's sequence up to the second-last item. Rows stay grouped by sequence,
    shortest prefix first (a user's validation row is the longest prefix of their
    training sequence), as :func:`whole_sequence_rows` and :func:`sequence_events` read them.
    """
    from recbole.data.interaction import cat_interactions

    rows = cat_interactions([splits.train.inter_feat, splits.valid.inter_feat])
    # Sequences in order of first appearance (time order: validation sessions are the
    # most recent), each sequence's rows in file order (its validation row last).
    _, first, codes = np.unique(rows[splits.train.uid_field].numpy(), return_index=True, return_inverse=True)
    order = np.lexsort((np.arange(len(codes)), first[codes]))
    return splits.train.copy(rows[torch.as_tensor(order, dtype=torch.long)])




def window_stride(stride: int | float | None, max_len: int) -> int:
    """``train_stride`` in items: an int counts items; a float in (0, 1] is a fraction of
    ``max_len`` (rounded, at least 1), so one setting fits datasets converted with any
    ``max_len``; None is ``max_len`` (disjoint windows)."""
    if stride is None:
        return max_len
    if isinstance(stride, bool) or not isinstance(stride, (int, float, np.integer, np.floating)):
        raise ValueError(f"train_stride must be a number of items or a fraction of max_len, not {stride!r}")
    if isinstance(stride, (float, np.floating)):
        if not 0 < stride <= 1:
            raise ValueError(f"train_stride {stride}: a fraction of max_len must be in (0, 1]; "
                             "give a whole number of items as an int")
        return max(1, round(float(stride) * max_len))
    if not 1 <= stride <= max_len:
        raise ValueError(f"train_stride must be between 1 and max_len = {max_len}, not {stride}")
    return int(stride)


def whole_sequence_rows(train, stride: int | float | None = None):
    """The training rows that hold whole sequences, for per-position training.

    The converter writes every prefix of a sequence, shortest first. The longest row
    of a sequence, with its target appended, is the whole sequence. A sequence
    longer than ``max_len + 1`` was truncated, so it is covered by windows: every
    ``stride``-th row counted back from its longest (``stride``: ``max_len`` when
    None). Each window trains its last ``stride`` targets (the earliest window of a
    sequence: all of its targets), so each target is trained exactly once, and
    ``loss_start`` (:data:`LOSS_START_FIELD`) holds the first position with a loss.

    A target then sees at least ``max_len - stride + 1`` items before it where it has
    that many, against ``max_len`` in RecBole's prefix row (which the test cases also
    get): ``stride = max_len`` gives disjoint windows, the cheapest, where a window's
    first targets see few items; ``stride = 1`` is every prefix row, one loss each,
    exactly RecBole's training rows. A float ``stride`` is a fraction of ``max_len``
    (:func:`window_stride`): 0.5 is 25 items apart on a 50-item window.
    """
    from recbole.data.interaction import Interaction

    max_len = int(train.field2seqlen[train.item_id_list_field])
    stride = window_stride(stride, max_len)
    uid = train.inter_feat[train.uid_field].numpy()
    n = len(uid)
    starts = np.r_[True, uid[1:] != uid[:-1]] if n else np.zeros(0, dtype=bool)
    group = np.cumsum(starts) - 1
    group_start = np.flatnonzero(starts)
    group_size = np.diff(np.r_[group_start, n])
    position = np.arange(n) - group_start[group]  # 0 for the shortest prefix
    from_end = group_size[group] - 1 - position
    keep = np.flatnonzero(from_end % stride == 0)
    rows = train.inter_feat[torch.as_tensor(keep, dtype=torch.long)]
    lengths = rows[train.item_list_length_field].numpy().astype(np.int64)
    earliest = position[keep] < stride  # no window before it: it trains every target it has
    loss_start = np.where(earliest, 0, lengths - stride)
    rows.update(Interaction({LOSS_START_FIELD: torch.as_tensor(loss_start, dtype=torch.long)}))
    return train.copy(rows)
