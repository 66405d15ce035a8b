"""GRU4Rec's own training: session-parallel mini-batches, sampled negatives, Adagrad with momentum.

See :mod:`custom_models.gru4rec` for the model and the papers. The pieces here:

* :func:`sessions_from_rows`: the training sessions, as one flat array of item ids
  and session offsets, rebuilt from the whole-sequence rows the runner hands over;
* :func:`session_parallel`: the lanes of the mini-batches, step by step;
* :class:`PopularitySampler`: extra negatives ∝ count^alpha, drawn in large chunks;
* :class:`AdagradM`: the official code's optimiser;
* :class:`GRU4RecTrainer`: one pass over the sessions per epoch.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.optim import Optimizer

import bench.compat  # noqa: F401
from bench.rows import LOSS_START_FIELD
from bench.training import HarnessTrainer


def sessions_from_rows(dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(items, offsets)``: session ``s`` is ``items[offsets[s]:offsets[s + 1]]``, in row order.

    Each row is a whole sequence: ``item_id_list[:item_length]`` then ``item_id``
    (:func:`bench.data.whole_sequence_rows`). A sequence longer than ``max_len + 1``
    comes as several rows of the same session id, each later row a full
    ``max_len`` window whose first item is the previous row's target; they are
    stitched back into one session.
    """
    inter = dataset.inter_feat
    if LOSS_START_FIELD in inter and bool((inter[LOSS_START_FIELD] > 0).any()):
        raise ValueError("GRU4Rec's session-parallel training needs disjoint windows: "
                         "leave train_stride unset (it is max_len)")
    uid = inter[dataset.uid_field].numpy()
    seqs = inter[dataset.item_id_list_field].numpy()
    lengths = inter[dataset.item_list_length_field].numpy().astype(np.int64)
    last = inter[dataset.iid_field].numpy()
    n, width = seqs.shape
    full = np.zeros((n, width + 1), dtype=np.int64)
    full[:, :width] = seqs
    full[np.arange(n), lengths] = last
    cont = np.r_[False, uid[1:] == uid[:-1]]
    rows = np.flatnonzero(cont)
    if len(rows) and not ((lengths[rows] == width) & (full[rows, 0] == last[rows - 1])).all():
        raise ValueError("GRU4Rec trains on whole sequences (train_on = 'sequences'), "
                         "not on every prefix: rows of one session do not continue each other")
    columns = np.arange(width + 1)
    keep = (columns >= cont[:, None]) & (columns <= lengths[:, None])
    items = full[keep]
    session = np.cumsum(~cont) - 1
    sizes = np.bincount(session, weights=keep.sum(1)).astype(np.int64)
    return items, np.r_[0, np.cumsum(sizes)]


Step = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]  # (positions, reset, keep)


SESSION_ORDERS = ("data", "random", "longest_first")


def checked_session_order(how: str) -> str:
    if how not in SESSION_ORDERS:
        raise ValueError(f"session_order must be one of {', '.join(SESSION_ORDERS)}, not {how!r}")
    return how


def session_order(offsets: np.ndarray, how: str, generator: torch.Generator | None = None) -> np.ndarray | None:
    """The order in which sessions enter the lanes (``None``: as stored).

    * ``data``: as stored, the converted data's row order (time order, as the official
      code's ``time_sort``);
    * ``random``: a new permutation every call (the official ``train_random_order``);
    * ``longest_first``: longest sessions first, ties as stored. A lane that draws a
      long session late keeps running after the others have run dry, so the last
      mini-batches shrink to a few lanes; fed longest first, the lanes run dry at
      about the same step (longest-processing-time scheduling). On MovieLens-100k
      (943 user histories of up to 736 items, 97,171 events to predict, 128 lanes)
      an epoch takes 1158 steps as stored and 766 longest first (760 at best).
    """
    if checked_session_order(how) == "random":
        return torch.randperm(len(offsets) - 1, generator=generator).numpy()
    if how == "longest_first":
        return np.argsort(-np.diff(offsets), kind="stable")
    return None


def session_parallel(offsets: np.ndarray, batch_size: int, order: np.ndarray | None = None) -> Iterator[Step]:
    """Session-parallel mini-batches: yields ``(positions, reset, keep)`` per step.

    Lane ``k`` reads the event at ``positions[k]`` and predicts the one at
    ``positions[k] + 1``. ``reset[k]``: the lane has just started a new session, so
    its hidden state must be zero. ``keep``: ``None``, or which of the previous
    step's lanes are still running (a lane is dropped when no session is left to
    start in it, so the last mini-batches shrink). Sessions enter lanes in
    ``order`` (session indices; default: as stored); sessions of one item (nothing
    to predict) are skipped.
    """
    sizes = np.diff(offsets)
    sessions = np.flatnonzero(sizes >= 2) if order is None else order[sizes[order] >= 2]
    lanes = min(batch_size, len(sessions))
    if lanes == 0:
        return
    start = offsets[sessions[:lanes]].copy()
    end = offsets[sessions[:lanes] + 1].copy()
    following = lanes  # the next unused session
    reset, keep = np.ones(lanes, dtype=bool), None
    while True:
        yield start.copy(), reset, keep
        start += 1
        done = np.flatnonzero(end - start <= 1)  # nothing left to predict in these lanes
        reset, keep = np.zeros(len(start), dtype=bool), None
        if len(done) == 0:
            continue
        refill = done[: len(sessions) - following]
        new = sessions[following:following + len(refill)]
        start[refill], end[refill] = offsets[new], offsets[new + 1]
        reset[refill] = True
        following += len(refill)
        if len(refill) < len(done):
            keep = np.ones(len(start), dtype=bool)
            keep[done[len(refill):]] = False
            start, end, reset = start[keep], end[keep], reset[keep]
            if len(start) == 0:
                return


class PopularitySampler:
    """Items drawn with replacement ∝ ``counts ** alpha``, ``n_sample`` per mini-batch.

    As in the official code, ``cache_size`` ids are drawn at once (inverse CDF by
    binary search) and handed out ``n_sample`` at a time; a new chunk is drawn when
    the cache runs out. Items with count 0 are never drawn.
    """

    def __init__(self, counts: torch.Tensor, alpha: float, n_sample: int, cache_size: int = 10_000_000,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu"):
        weights = counts.double() ** alpha
        weights[counts <= 0] = 0.0
        self.cdf = (weights.cumsum(0) / weights.sum()).float()
        self.cdf[-1] = 1.0
        self.n_sample = int(n_sample)
        self.chunks = max(1, int(cache_size) // self.n_sample)
        self.generator = generator
        self.device = torch.device(device)  # where the cache lives: drawn on the CPU, copied once a refill
        self._cache, self._next = None, 0
        self._drawn_from: torch.Tensor | None = None  # the generator's state before the cache was drawn

    def state(self) -> dict:
        """Where the sampler stands, in a few bytes: the cache is redrawn from it, not saved."""
        return {"drawn_from": self._drawn_from, "next": self._next}

    def restore(self, state: dict) -> None:
        """Continue exactly where :meth:`state` was taken (the generator's current state is kept)."""
        if state["drawn_from"] is None:
            return
        get, put = ((self.generator.get_state, self.generator.set_state) if self.generator is not None
                    else (torch.get_rng_state, torch.set_rng_state))
        now = get()
        put(state["drawn_from"])
        self._refill()
        self._next = int(state["next"])
        put(now)

    def _refill(self) -> None:
        self._drawn_from = torch.get_rng_state() if self.generator is None else self.generator.get_state()
        u = torch.rand(self.chunks * self.n_sample, generator=self.generator)
        # first item whose cumulative weight exceeds u (a zero-weight item never does)
        drawn = torch.searchsorted(self.cdf, u, right=True).clamp_(max=len(self.cdf) - 1).view(self.chunks, -1)
        self._cache = drawn.to(self.device)
        self._next = 0

    def sample(self) -> torch.Tensor:
        if self._cache is None or self._next >= self.chunks:
            self._refill()
        self._next += 1
        return self._cache[self._next - 1]


class AdagradM(Optimizer):
    """Adagrad with momentum, GRU4Rec's optimiser (the official code's ``IndexedAdagradM``)::

        acc += g^2
        v    = momentum * v - lr * g / sqrt(acc + eps)
        p   += v                       (momentum 0: p -= lr * g / sqrt(acc + eps))

    A sparse gradient (embedding rows) updates only its rows: ``acc``, ``v`` and the
    parameter of every other row are left alone, so momentum is lazy per row.
    """

    def __init__(self, params, lr: float = 0.05, momentum: float = 0.0, eps: float = 1e-6,
                 sync_free: bool | None = None):
        if lr <= 0 or momentum < 0 or eps <= 0:
            raise ValueError(f"invalid AdagradM settings: lr={lr}, momentum={momentum}, eps={eps}")
        super().__init__(params, dict(lr=lr, momentum=momentum, eps=eps))
        # how repeated rows of a sparse gradient are summed: None = sync-free off the CPU
        # (:func:`rows_summed_in_place`), by coalescing on the CPU
        self.sync_free = sync_free

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, eps = group["lr"], group["momentum"], group["eps"]
            dense = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["acc"] = torch.zeros_like(p)
                    if momentum > 0:
                        state["mom"] = torch.zeros_like(p)
                if p.grad.is_sparse:
                    self._sparse_step(p, state, lr, momentum, eps)
                else:
                    dense.append(p)
            if dense:
                self._dense_step(dense, lr, momentum, eps)
        return loss

    def _dense_step(self, params: list[torch.Tensor], lr: float, momentum: float, eps: float) -> None:
        """The update of every dense parameter at once (a few multi-tensor ops, the same arithmetic)."""
        grads = [p.grad for p in params]
        acc = [self.state[p]["acc"] for p in params]
        torch._foreach_addcmul_(acc, grads, grads)
        denom = torch._foreach_add(acc, eps)
        torch._foreach_sqrt_(denom)
        if momentum > 0:
            mom = [self.state[p]["mom"] for p in params]
            torch._foreach_mul_(mom, momentum)
            torch._foreach_addcdiv_(mom, grads, denom, value=-lr)
            torch._foreach_add_(params, mom)
        else:
            torch._foreach_addcdiv_(params, grads, denom, value=-lr)

    def _sparse_step(self, p: torch.Tensor, state: dict, lr: float, momentum: float, eps: float) -> None:
        grad = p.grad
        once = None  # which slots add to the parameter: all, unless rows repeat (sync-free summing)
        if self.sync_free if self.sync_free is not None else p.device.type != "cpu":
            rows, values, once = rows_summed_in_place(grad._indices()[0], grad._values())
        else:
            # repeated rows must be summed before squaring. Autograd drops the "coalesced"
            # flag of the gradients of cpu.ops.lookup, so strictly increasing rows are
            # recognised here rather than sorted again.
            rows = grad._indices()[0]
            if not (grad.is_coalesced() or len(rows) < 2 or bool((rows[1:] > rows[:-1]).all())):
                grad = grad.coalesce()
                rows = grad._indices()[0]
            values = grad._values()
        acc = state["acc"].index_select(0, rows).addcmul_(values, values)
        state["acc"].index_copy_(0, rows, acc)
        update = values.mul(-lr).div_(acc.add_(eps).sqrt_())
        if momentum > 0:
            update = state["mom"].index_select(0, rows).mul_(momentum).add_(update)
            state["mom"].index_copy_(0, rows, update)
        p.index_add_(0, rows, update if once is None else update * once)


def rows_summed_in_place(rows: torch.Tensor, values: torch.Tensor):
    """``(rows, values, once)``: a sparse gradient's repeated rows summed without the host
    ever reading how many distinct rows there are (coalescing reads it, which makes the
    host wait for a GPU at every step).

    The result has as many slots as the gradient has entries: the first ``k`` hold the
    ``k`` distinct rows, ascending, with their summed values; the others repeat the last
    of them, values included, so a new value written to a row is the same from every
    slot that holds it. ``once`` [n, 1] is 1 on the first ``k`` slots and 0 on the
    others: an update that adds to a row is multiplied by it.
    """
    n = len(rows)
    if n == 0:
        return rows, values, values.new_ones(0, 1)
    rows, order = rows.sort()
    values = values.index_select(0, order)
    starts = torch.ones(n, dtype=torch.bool, device=rows.device)
    starts[1:] = rows[1:] != rows[:-1]
    slot = starts.cumsum(0) - 1  # each entry's distinct row
    summed = torch.zeros_like(values).index_add_(0, slot, values)
    distinct = torch.zeros_like(rows).scatter_(0, slot, rows)
    position = torch.arange(n, device=rows.device)
    last = slot[-1:]  # k - 1, on the device
    repeat = torch.minimum(position, last)
    once = (position <= last).to(values.dtype).view(-1, *([1] * (values.dim() - 1)))
    return distinct.index_select(0, repeat), summed.index_select(0, repeat), once


class GRU4RecTrainer(HarnessTrainer):
    """One epoch = one session-parallel pass over the training sessions (RecBole's batches unused)."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.batch_size = int(config["train_batch_size"])
        self.n_sample = int(config["n_sample"] or 0)
        self.sample_alpha = float(config["sample_alpha"])
        self.cache_size = int(config["sample_cache_size"] or 10_000_000)
        self.generator = torch.Generator().manual_seed(int(config["seed"]))
        self.session_order = checked_session_order(str(config["session_order"] or "data"))
        self._sessions = None  # (dataset, items, offsets), rebuilt when the dataset changes
        self._prepared_for = None  # the items array that sampler and log_counts belong to
        self.sampler: PopularitySampler | None = None
        self._sampler_state: dict | None = None  # a resumed run's sampler position
        self.log_counts: torch.Tensor | None = None

    def progress_state(self) -> dict:
        return {"generator": self.generator.get_state(), "sampler": self.sampler.state() if self.sampler else None}

    def load_progress_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._sampler_state = state["sampler"]  # applied once the sampler exists (_prepare)

    def _build_optimizer(self, **kwargs):
        return AdagradM(self.model.parameters(), lr=self.config["learning_rate"],
                        momentum=float(self.config["momentum"] or 0.0))

    def train_epoch(self, train_data, epoch_idx, show_progress=False):
        dataset = train_data.dataset
        if self._sessions is None or self._sessions[0] is not dataset:
            self._sessions = (dataset, *sessions_from_rows(dataset))
        return self.train_sessions(*self._sessions[1:], show_progress=show_progress)

    def _prepare(self, items: np.ndarray):
        """The sampler and the logQ terms for these training sessions (built once)."""
        if self._prepared_for is items:
            return
        counts = torch.as_tensor(np.bincount(items, minlength=self.model.n_items)[: self.model.n_items])
        self.sampler = (PopularitySampler(counts, self.sample_alpha, self.n_sample, self.cache_size, self.generator,
                                          self.device) if self.n_sample > 0 else None)
        if self.sampler is not None and self._sampler_state is not None:
            self.sampler.restore(self._sampler_state)
        self._sampler_state = None
        # logQ: a mini-batch target is drawn ∝ count, an extra sample ∝ count^alpha (official code)
        self.log_counts = counts.double().clamp(min=1).log().float().to(self.device)
        self._prepared_for = items

    def train_sessions(self, items: np.ndarray, offsets: np.ndarray, show_progress: bool = False) -> float:
        """One pass over the sessions; returns the mean loss per predicted event.

        The epoch's mini-batches are planned on the host first and their positions and
        resets copied to the device in one go, so a step never waits for a host-to-device
        copy; with the negatives' cache on the device and the optimiser's sparse step
        sync-free there, a GPU step does not wait for the host at all (a lane dropped at
        the end of the epoch copies its index)."""
        self._prepare(items)
        model = self.model
        model.train()
        events = torch.as_tensor(items, device=self.device)
        plan = list(session_parallel(offsets, self.batch_size,
                                     session_order(offsets, self.session_order, self.generator)))
        if not plan:
            return 0.0
        bounds = np.cumsum([0] + [len(positions) for positions, _, _ in plan])
        all_positions = torch.as_tensor(np.concatenate([positions for positions, _, _ in plan]), device=self.device)
        all_resets = torch.as_tensor(np.concatenate([reset for _, reset, _ in plan]), device=self.device)
        steps = enumerate(plan)
        if show_progress:
            from tqdm import tqdm

            steps = tqdm(steps, total=len(plan), ncols=100, desc="Train", mininterval=5)
        H = None
        # on the model's device: a CPU accumulator made every CUDA step fail (and would sync)
        total, n_events = torch.zeros((), dtype=torch.float64, device=self.device), 0
        for step, (positions, reset, keep) in steps:
            lo, hi = int(bounds[step]), int(bounds[step + 1])
            if H is None:
                H = model.zero_state(len(positions))
            if keep is not None:
                kept = torch.as_tensor(np.flatnonzero(keep), device=self.device)
                H = [h.index_select(0, kept) for h in H]
            if reset.any():
                H = [h.masked_fill(all_resets[lo:hi].view(-1, 1), 0.0) for h in H]
            if self.sampler is None and len(positions) < 2:
                break  # no negatives left (as in the official code)
            pos = all_positions[lo:hi]
            inputs, targets = events[pos], events[pos + 1]
            samples = log_q = None
            if self.sampler is not None:
                samples = self.sampler.sample()
            if model.loss_name == "cross-entropy" and model.logq > 0:
                log_q = self.log_counts[targets]
                if samples is not None:
                    log_q = torch.cat([log_q, self.sample_alpha * self.log_counts[samples]])
            self.optimizer.zero_grad()
            loss, H = model.session_step(inputs, targets, samples, H, log_q)
            loss.backward()
            self.optimizer.step()
            total += loss.detach().double() * len(positions)  # the loss is a mean over the step's events
            n_events += len(positions)
        # checked once an epoch: a check per step would wait for the GPU at every step
        if not torch.isfinite(total):
            raise ValueError("training loss is nan")
        return float(total) / max(1, n_events)
