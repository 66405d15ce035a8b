"""Training batches of whole sequences, sized by their prediction targets.

A model that trains on whole sequences with a loss at every position
(``train_on = "sequences"``) gets one row per sequence, and a row of a 40-item
sequence holds 40 prediction targets (a window that overlaps the one before it has
targets from its ``loss_start`` on only, :func:`bench.data.whole_sequence_rows`).
RecBole's models (and the NARM paper) train on one row per prefix: one target per
row. So ``train_batch_size: 512`` means 512 targets to them and, counted in
sequences, ~40x more targets per step to us, with ~40x fewer optimiser steps per
epoch (measured on MovieLens-100k: 5 Adam steps per NARM epoch against RecBole's 190).

``batch_unit`` says what ``train_batch_size`` counts:

* ``targets`` (NARM's default, the paper's 512 prefixes): rows are shuffled every epoch and cut into
  batches of about ``train_batch_size`` targets: row ``r`` goes to batch
  ``floor(targets before r / train_batch_size)``. A batch holds between
  ``train_batch_size - max_len`` and ``train_batch_size + max_len`` targets, on average
  exactly ``train_batch_size``, and an epoch has ``ceil(total targets /
  train_batch_size)`` steps or one fewer, as RecBole's prefix rows give. (A batch
  smaller than a row's targets gets that row alone: ``max_len`` targets at most.)
* ``iid_targets`` (NARM's default on session data, ``batch_unit: auto``: the paper's
  batches of 512 prefixes drawn i.i.d.):
  every epoch, all targets (a row's positions from its ``loss_start`` on) are shuffled
  and cut into batches of exactly ``train_batch_size`` (the last one smaller), as
  RecBole's shuffled prefix rows are; the rows that hold a batch's targets are encoded
  once, up to the last target drawn from each, and only the drawn positions get a loss
  (``loss_mask``). So a batch is the same i.i.d. sample of prefixes as RecBole's, with
  its gradient (whole-sequence batches hold ~100 correlated sessions per 512 targets
  and learned less per epoch on short sessions), while the encoder runs once per row
  instead of once per prefix.
  On long histories (leave-one-out) a batch's targets almost always come from as many
  rows, so this costs as much as RecBole's prefix rows. ``targets_per_row: G`` (default 1)
  draws them in groups: every epoch each row's targets are shuffled and cut into groups
  of ``G``, the groups of all rows are shuffled, and batches are cut as before. A batch
  then holds ~``train_batch_size / G`` rows, each encoded once: ~``G`` times fewer encoder
  passes an epoch, and batches less i.i.d. than ``G = 1`` but far more than whole
  sequences (``targets``) are.
* ``sequences`` (SASRec's default, the paper's batch of 128 sequences; also what a
  model YAML without ``batch_unit`` gets): RecBole's own loader, ``train_batch_size`` rows.
"""
from __future__ import annotations

import numpy as np
import torch

from bench.rows import LOSS_MASK_FIELD, LOSS_START_FIELD
from recbole.data.dataloader.general_dataloader import TrainDataLoader
from recbole.data.interaction import Interaction

BATCH_UNITS = ("targets", "iid_targets", "sequences")


def target_batches(row_targets: np.ndarray, order: np.ndarray, budget: int) -> list[np.ndarray]:
    """Rows in ``order``, cut where the running count of targets crosses a multiple of ``budget``."""
    before = np.cumsum(row_targets[order]) - row_targets[order]  # targets ahead of each row
    batch = before // budget
    cuts = np.flatnonzero(np.diff(batch)) + 1
    return np.split(order, cuts)


class TargetBatchLoader(TrainDataLoader):
    """RecBole's training loader with batches of about ``train_batch_size`` targets.

    Each row of the dataset is a whole sequence; its targets are its item-list length
    (one per position, the last one predicting the row's own target item). The plan
    of an epoch is drawn when the epoch starts (or when ``len`` is first asked), from
    the loader's seeded generator, so runs with the same seed see the same batches.
    """

    def __init__(self, config, dataset, sampler, shuffle=False):
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        rows = dataset.inter_feat
        self.row_targets = rows[config["ITEM_LIST_LENGTH_FIELD"]].numpy().astype(np.int64)
        if LOSS_START_FIELD in rows:  # overlapping windows: the positions before it are context only
            self.row_targets = self.row_targets - rows[LOSS_START_FIELD].numpy()
        if len(self.row_targets) and self.row_targets.min() < 1:
            raise ValueError("a training row without items: every whole-sequence row needs at least one target")
        self.budget = max(1, int(config["train_batch_size"]))
        self._plan: list[np.ndarray] | None = None

    def _draw_plan(self) -> list[np.ndarray]:
        n = len(self.row_targets)
        if n == 0:
            return []
        order = torch.randperm(n, generator=self.generator).numpy() if self.shuffle else np.arange(n)
        return target_batches(self.row_targets, order, self.budget)

    def __len__(self) -> int:
        if self._plan is None:
            self._plan = self._draw_plan()
        return len(self._plan)

    def __iter__(self):
        plan = self._plan if self._plan is not None else self._draw_plan()
        self._plan = None  # the next epoch draws its own
        for rows in plan:
            yield self.collate_fn(rows)


class IIDTargetBatchLoader(TrainDataLoader):
    """Batches of ``train_batch_size`` targets drawn i.i.d. (without replacement over an
    epoch) from every position of every whole-sequence row (``batch_unit: iid_targets``).

    A batch is the rows holding its targets, each cut after its last drawn position
    (``item_length``, and ``item_id`` the target there), with ``loss_mask`` marking the
    drawn positions. The order is drawn from the loader's seeded generator.
    """

    def __init__(self, config, dataset, sampler, shuffle=False):
        super().__init__(config, dataset, sampler, shuffle=shuffle)
        rows = dataset.inter_feat
        self.item_list_field = dataset.item_id_list_field
        self.length_field, self.target_field = config["ITEM_LIST_LENGTH_FIELD"], dataset.iid_field
        lengths = rows[self.length_field].numpy().astype(np.int64)
        start = rows[LOSS_START_FIELD].numpy().astype(np.int64) if LOSS_START_FIELD in rows else np.zeros_like(lengths)
        if len(lengths) and (lengths - start).min() < 1:
            raise ValueError("a training row without items: every whole-sequence row needs at least one target")
        # every (row, position) with a loss, flat
        counts = lengths - start
        self.target_row = np.repeat(np.arange(len(lengths)), counts)
        self.target_pos = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + \
            np.repeat(start, counts)
        self.budget = max(1, int(config["train_batch_size"]))
        per_row = config["targets_per_row"]
        self.group = 1 if per_row is None else int(per_row)
        if self.group < 1:
            raise ValueError(f"targets_per_row must be at least 1, not {config['targets_per_row']!r}")

    def __len__(self) -> int:
        return -(-len(self.target_row) // self.budget)

    def __iter__(self):
        n = len(self.target_row)
        if not self.shuffle:
            order = np.arange(n)
        elif self.group == 1:
            order = torch.randperm(n, generator=self.generator).numpy()
        else:
            order = self.grouped_order()
        for lo in range(0, n, self.budget):
            yield self.batch(order[lo:lo + self.budget])

    def grouped_order(self) -> np.ndarray:
        """Every target once: each row's targets in a random order, cut into groups of
        ``targets_per_row``, the groups of all rows in a random order."""
        n = len(self.target_row)
        shuffled = torch.randperm(n, generator=self.generator).numpy()
        by_row = shuffled[np.argsort(self.target_row[shuffled], kind="stable")]  # random within each row
        row = self.target_row[by_row]
        first_of_row = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        rank = np.arange(n) - np.repeat(first_of_row, np.diff(np.r_[first_of_row, n]))
        group_start = rank % self.group == 0
        group = np.cumsum(group_start) - 1
        group_rank = torch.randperm(int(group_start.sum()), generator=self.generator).numpy()
        return by_row[np.argsort(group_rank[group], kind="stable")]

    def batch(self, targets: np.ndarray):
        """The interaction for the targets at flat indices ``targets``."""
        rows, inverse = np.unique(self.target_row[targets], return_inverse=True)
        pos = self.target_pos[targets]
        last = np.zeros(len(rows), dtype=np.int64)
        np.maximum.at(last, inverse, pos)
        data = self.collate_fn(rows)
        item_list = data[self.item_list_field]
        length = torch.as_tensor(last + 1)
        cut = length < data[self.length_field]  # the row continues: its new last target is an input item
        target = data[self.target_field].clone()
        target[cut] = item_list[cut, length[cut]]
        item_list = item_list.masked_fill(torch.arange(item_list.size(1)).view(1, -1) >= length.view(-1, 1), 0)
        mask = torch.zeros(item_list.shape, dtype=torch.bool)
        mask[torch.as_tensor(inverse), torch.as_tensor(pos)] = True
        data.update(Interaction({self.item_list_field: item_list,
                                 self.length_field: length.to(data[self.length_field].dtype),
                                 self.target_field: target, LOSS_MASK_FIELD: mask}))
        return data
