"""Per-position training on whole sequences, shared by NARM and SASRec.

A model that declares ``train_on = "sequences"`` gets one training row per sequence
(:func:`bench.data.whole_sequence_rows`): ``item_id_list`` holds the inputs
(left-aligned, 0-padded) and ``item_id`` the target of the last input. The target of
position ``t`` is input ``t + 1``; the target of position ``item_length - 1`` is
``item_id``. Positions ``>= item_length`` are padding and carry no loss. A causal
model's output at position ``t`` depends only on inputs ``<= t``, so this one row
gives the same loss terms as the ``item_length`` prefix rows RecBole would build,
in one pass. A long sequence comes as windows that may overlap; a window's
positions before its ``loss_start`` are context only.

Also here: the training item counts and a sampled softmax with popularity negatives
and logQ correction (the option that makes large catalogues cheap).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from bench.rows import LOSS_MASK_FIELD, LOSS_START_FIELD, sequence_events
from custom_models.cpu import ops as cpu_ops


def position_targets(item_seq: torch.Tensor, item_seq_len: torch.Tensor, last_target: torch.Tensor,
                     loss_start: torch.Tensor | None = None, loss_mask: torch.Tensor | None = None):
    """``(inputs [B, L], targets [B, L], real [B, L] bool)`` with L the longest row of the batch.

    ``real`` marks the positions with a loss: before ``item_seq_len`` and, where
    ``loss_start`` is given (overlapping windows), from ``loss_start`` on, and where
    ``loss_mask`` [B, >= L] is given (targets drawn i.i.d., :mod:`bench.batching`),
    where it is True. Targets are 0 where ``real`` is False.
    """
    width = int(item_seq_len.max())
    inputs = item_seq[:, :width]
    targets = torch.zeros_like(inputs)
    targets[:, :-1] = inputs[:, 1:]
    targets.scatter_(1, (item_seq_len - 1).view(-1, 1), last_target.view(-1, 1))
    position = torch.arange(width, device=inputs.device).view(1, -1)
    real = position < item_seq_len.view(-1, 1)
    if loss_start is not None:
        real &= position >= loss_start.view(-1, 1)
    if loss_mask is not None:
        real &= loss_mask[:, :width]
    return inputs, targets * real, real


def loss_start_of(interaction) -> torch.Tensor | None:
    """The rows' first position with a loss, if the rows overlap (:func:`bench.data.whole_sequence_rows`)."""
    return interaction[LOSS_START_FIELD] if LOSS_START_FIELD in interaction else None


def loss_mask_of(interaction) -> torch.Tensor | None:
    """The rows' positions with a loss, if the batch drew its targets i.i.d. (:mod:`bench.batching`)."""
    return interaction[LOSS_MASK_FIELD] if LOSS_MASK_FIELD in interaction else None


def training_item_counts(dataset, n_items: int) -> torch.Tensor:
    """How often each item occurs in the training sequences (the counts POP ranks by)."""
    _, items = sequence_events(dataset)
    return torch.as_tensor(np.bincount(items, minlength=n_items)[:n_items], dtype=torch.float64)


def full_softmax_loss(output: torch.Tensor, targets: torch.Tensor, item_weight: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over all items; item 0 (padding) is never a candidate.
    On CPU, :func:`custom_models.cpu.ops.item_cross_entropy` computes it (oneDNN products,
    the softmax in place; same values and gradients)."""
    if cpu_ops.applies(output, item_weight):
        return cpu_ops.item_cross_entropy(output, item_weight, targets)
    return F.cross_entropy(F.linear(output, item_weight[1:]), targets - 1)


class PopularitySampledSoftmax:
    """Sampled softmax: the target against ``n`` negatives drawn with replacement
    ∝ count^alpha, one draw shared by the whole batch (one matrix product, as in
    GRU4Rec's extra samples).

    logQ correction (importance sampling, Bengio & Senecal 2008): a negative's logit is
    lowered by ``log(n q_j)`` and a negative that equals the row's target is dropped, so
    that the negatives' ``sum exp(o_j - log(n q_j))`` is an unbiased estimate of
    ``sum_{j != target} exp(o_j)``: the softmax over the target and the corrected
    negatives estimates the full softmax. The target keeps its own logit: it is not
    drawn from q (correcting it too would give rare targets almost no gradient).
    """

    def __init__(self, counts: torch.Tensor, n_negatives: int, alpha: float):
        weights = counts.clamp(min=0) ** alpha
        weights[0] = 0.0  # padding
        if weights.sum() <= 0:
            raise ValueError("no training items to sample negatives from")
        self.n_negatives = int(n_negatives)
        self.probs = (weights / weights.sum()).float()
        self.log_q = torch.log(self.probs)  # -inf for items never drawn (never used)
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def on(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probs, log_q)`` on ``device``, copied there once: no host-to-GPU copy per step."""
        device = torch.device(device)
        if device not in self._on_device:
            self._on_device[device] = (self.probs.to(device), self.log_q.to(device))
        return self._on_device[device]

    def sample(self, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.multinomial(self.on(device)[0], self.n_negatives, replacement=True)

    def loss(self, output: torch.Tensor, targets: torch.Tensor, item_weight: torch.Tensor,
             negatives: torch.Tensor | None = None) -> torch.Tensor:
        """Mean sampled-softmax loss of ``output`` [N, d] for ``targets`` [N]; ``negatives`` [n] drawn if None."""
        if negatives is None:
            negatives = self.sample(output.device)
        positive = (output * item_weight[targets]).sum(-1)
        correction = self.on(output.device)[1][negatives] + math.log(len(negatives))
        negative = output @ item_weight[negatives].t() - correction
        negative = negative.masked_fill(targets.view(-1, 1) == negatives.view(1, -1), -torch.inf)
        logits = torch.cat([positive.view(-1, 1), negative], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(targets))


def make_softmax_loss(config, dataset, n_items: int):
    """The CE loss chosen by ``loss_type``: ``CE`` (full softmax) or ``sampled``."""
    if config["loss_type"] == "CE":
        return full_softmax_loss
    if config["loss_type"] == "sampled":
        sampler = PopularitySampledSoftmax(training_item_counts(dataset, n_items),
                                           config["n_negatives"], config["sample_alpha"])
        return sampler.loss
    raise ValueError(f"loss_type must be CE or sampled, not {config['loss_type']!r}")


def init_weights(model: torch.nn.Module, item_embedding: torch.nn.Embedding,
                 keep_default: tuple[torch.nn.Module, ...] = ()) -> None:
    """Xavier-normal for every matrix but those of ``keep_default`` (PyTorch's own
    initialisation stays there), and a zero padding row (item 0) in the item embedding."""
    kept = {id(p) for module in keep_default for p in module.parameters()}
    for param in model.parameters():
        if param.dim() > 1 and id(param) not in kept:
            torch.nn.init.xavier_normal_(param)
    with torch.no_grad():
        item_embedding.weight[0].zero_()


class SharedEmbeddingScores:
    """RecBole's ``predict`` and ``full_sort_predict`` for a model that scores item ``i``
    as ``last_representation(sequence) . item_embedding[i]`` (the shared item
    embedding of NARM's bi-linear decoder and of SASRec). Put it before
    ``SequentialRecommender`` among the bases."""

    def predict(self, interaction) -> torch.Tensor:
        output = self.last_representation(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (output * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        output = self.last_representation(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        if cpu_ops.applies(output):  # oneDNN's product on CPU: the same scores
            return cpu_ops.linear(output, self.item_embedding.weight)
        return output @ self.item_embedding.weight.t()
