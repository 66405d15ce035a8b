"""NARM: Neural Attentive Session-based Recommendation.

Li, Ren, Chen, Ren, Lian, Ma. CIKM 2017. https://doi.org/10.1145/3132847.3132926

    bench run narm --dataset diginetica      (defaults: custom_models/narm.yaml)

A GRU reads the session's items (embedding 50, 100 units). After item ``t``:

* global context ``c_g = h_t``, the last hidden state;
* local context ``c_l = sum_{j<=t} alpha_tj h_j`` with ``alpha_tj = v^T sigmoid(A1 h_t + A2 h_j)``
  (not normalised, as in the paper);
* ``c = [c_g; c_l]`` and ``score_i = emb_i^T B c`` (bi-linear decoder, shared item embedding);
* dropout 0.25 on the item embeddings and 0.5 on ``c``; Adam 1e-3, batch 512,
  full-softmax cross-entropy.

How it trains (same loss as the paper, different bookkeeping): the paper, like
RecBole, trains on every prefix of every session as a separate padded row. Because
the GRU is causal and ``alpha_tj`` only looks at ``j <= t``, the representation of a
prefix is the one at its last position in the whole session. So we train on whole
sessions (``train_on = "sequences"``) with a loss at every position, and compute the
local attention for all positions at once with a causal mask. Training never builds
a padded tensor: the items are gathered into packed order (time-major, longest row
first), the GRU runs on the packed cells (:func:`custom_models.fast_ops.packed_gru`, a
C kernel with its backward), and so do the attention and the decoder. On CPU in
float32 the local attention is a small C kernel (``kernels/narm_attention.c``, built on
first use by :mod:`custom_models.native`) that never builds the [rows, T, J, H] sigmoid
tensor; without a C compiler the PyTorch path (:class:`CausalLocalAttention`, on the
padded batch) gives the same values. The loss is the
mean over all positions of the batch, and ``train_batch_size: 512`` counts targets (``batch_unit: targets``,
:mod:`bench.batching`): a batch holds whole sessions with about 512 positions in all,
the paper's 512 prefixes, and an epoch makes as many optimiser steps as the paper's.

Deviations and choices the paper leaves open:

* the GRU has no biases, as in the paper's GRU equations (RecBole too). With biases
  the hidden state carries a constant that lets the decoder learn item popularity
  first; on a Diginetica slice that held validation Recall@20 at POP's level for 10
  epochs, while the bias-free GRU reached 3x it;
* weights are Xavier-normal initialised (the paper does not say);
* item 0 is RecBole's padding and is never a softmax candidate;
* ``loss_type: sampled`` (not in the paper) replaces the full softmax by
  ``n_negatives`` popularity-sampled negatives with logQ correction
  (:class:`custom_models.per_position.PopularitySampledSoftmax`).
"""
from __future__ import annotations

import ctypes
import itertools

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

import bench.compat  # noqa: F401
from custom_models import native
from custom_models.fast_ops import Dropout, linear, packed_cells, packed_gru, padded_columns, unpacked
from custom_models.per_position import (SharedEmbeddingScores, init_weights, loss_mask_of, loss_start_of,
                                         make_softmax_loss, position_targets)
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType


def _blocks(lengths: torch.Tensor, hidden: torch.Tensor, block_elements: int):
    """Query blocks ``(rows, t0, t1, mask [T, J])``: queries t0..t1-1 of the rows still
    running at t0, against keys j < t1; ``mask`` keeps j <= t. Each block's sigmoid
    holds at most about ``block_elements`` numbers, and at most a quarter of the
    positions (8 or more) are queried at once: the keys after t1 are never built, so
    about 40% of the masked upper triangle is skipped (NARM step on MovieLens-100k,
    batch 512 targets: 26.8 -> 23.0 ms)."""
    _, length, size = hidden.shape
    causal = torch.ones(length, length, dtype=hidden.dtype, device=hidden.device).tril()
    t0 = 0
    while t0 < length:
        rows = torch.nonzero(lengths > t0).squeeze(1)
        n_rows = len(rows)
        if n_rows == 0:
            return
        if int(rows[-1]) == n_rows - 1:
            rows = slice(0, n_rows)  # the first rows (lengths sorted): views, not copies
        # keys stop at t1, so shorter query blocks skip more of the masked upper triangle
        queries = min(max(1, block_elements // (n_rows * length * size)), max(8, -(-length // 4)))
        t1 = min(length, t0 + queries)
        yield rows, t0, t1, causal[t0:t1, :t1]
        t0 = t1


class CausalLocalAttention(torch.autograd.Function):
    """NARM's local context after every position, ``c_l[b, t] = sum_{j<=t} alpha_tj h_j`` with
    ``alpha_tj = v . sigmoid(q_t + k_j)`` (``q = A1 h``, ``k = A2 h``), in one pass.

    The sigmoid is a [rows, T, J, H] tensor, so it is built block by block. Blocks up to
    ``keep_elements`` numbers in all are kept for backward; the rest are rebuilt there,
    so memory stays bounded whatever the batch. (Rebuilding is ``torch.utils.checkpoint``
    by hand, with the gradients written out, which avoids autograd's full-size gradient
    per block.) Positions ``>= lengths`` hold garbage.
    """

    @staticmethod
    def forward(ctx, query, keys, hidden, v, lengths, block_elements: int, keep_elements: int = 0):
        ctx.save_for_backward(query, keys, hidden, v, lengths)
        ctx.block_elements = block_elements
        local = torch.zeros_like(hidden)
        kept, budget = [], keep_elements
        for rows, t0, t1, mask in _blocks(lengths, hidden, block_elements):
            s = torch.sigmoid_(query[rows, t0:t1].unsqueeze(2) + keys[rows, :t1].unsqueeze(1))  # [R, T, J, H]
            alpha = (s @ v) * mask
            local[rows, t0:t1] = alpha @ hidden[rows, :t1]
            budget -= s.numel()
            kept.append((s, alpha) if budget >= 0 else None)
        ctx.kept = kept  # blocks within keep_elements: backward skips rebuilding them
        return local

    @staticmethod
    def backward(ctx, grad_local):
        query, keys, hidden, v, lengths = ctx.saved_tensors
        grad_query, grad_keys, grad_hidden = torch.zeros_like(query), torch.zeros_like(keys), torch.zeros_like(hidden)
        grad_v = v.new_zeros(1, len(v))
        # kept blocks are overwritten below: a second backward (retain_graph) rebuilds them
        kept, ctx.kept = ctx.kept or itertools.repeat(None), None
        for (rows, t0, t1, mask), block in zip(_blocks(lengths, hidden, ctx.block_elements), kept):
            if block is None:
                s = torch.sigmoid_(query[rows, t0:t1].unsqueeze(2) + keys[rows, :t1].unsqueeze(1))  # [R, T, J, H]
                alpha = (s @ v) * mask  # [R, T, J]
            else:
                s, alpha = block
            grad = grad_local[rows, t0:t1]  # [R, T, H]
            grad_hidden[rows, :t1] += alpha.transpose(1, 2) @ grad
            grad_alpha = (grad @ hidden[rows, :t1].transpose(1, 2)) * mask  # [R, T, J]
            grad_v += grad_alpha.reshape(1, -1) @ s.view(-1, s.size(-1))
            # d loss / d (q_t + k_j) = grad_alpha v s (1 - s); v is applied after the sums,
            # so the [R, T, J, H] tensor is passed over three times, not six
            ds = torch.addcmul(s, s, s, value=-1, out=s).mul_(grad_alpha.unsqueeze(-1))  # s is spent
            grad_query[rows, t0:t1] += ds.sum(2) * v
            grad_keys[rows, :t1] += ds.sum(1) * v
        return grad_query, grad_keys, grad_hidden, grad_v.view(-1), None, None, None


class NativePackedLocalAttention(torch.autograd.Function):
    """NARM's local context of every packed cell [cells, H] by the C kernel
    ``kernels/narm_attention.c``: each (query, key) pair's sigmoids are computed where
    they are used (no [rows, T, J, H] tensor), and the weighted sums run over the packed
    cells (no padded [rows, T, H] copy, no [rows, T, J] weights). ``query``, ``keys``,
    ``hidden`` [cells, H] in ``PackedSequence`` order with ``batch_sizes``. float32 on CPU only.

    The kernel gets H rounded up to a multiple of :data:`LANES` with zero columns (``v``
    is 0 there, so they add nothing): its loops over H then have no scalar remainder,
    which at NARM's H = 100 (six vectors of 16, then 4 scalar sigmoids per pair) cost
    about a fifth of its time (forward + backward, 12 rows of 50, interleaved in one
    process: median 1.81 -> 1.54 ms, minimum 1.37 -> 1.07 ms)."""

    @staticmethod
    def forward(ctx, query, keys, hidden, v, batch_sizes):
        ctx.size = hidden.size(1)
        query, keys, hidden, v = (padded_columns(x, LANES) for x in (query, keys, hidden, v))
        local = torch.zeros_like(hidden)
        native.kernel("narm_attention").narm_attention_forward(
            *map(native.pointer, (query, keys, hidden, v)), *_layout(batch_sizes, hidden), native.pointer(local))
        ctx.save_for_backward(query, keys, hidden, v, batch_sizes)
        return local[:, :ctx.size]

    @staticmethod
    def backward(ctx, grad_local):
        query, keys, hidden, v, batch_sizes = ctx.saved_tensors
        grad_query, grad_keys, grad_hidden = torch.empty_like(query), torch.zeros_like(keys), torch.zeros_like(hidden)
        grad_v_rows = hidden.new_zeros(int(batch_sizes[0]), hidden.size(1))
        native.kernel("narm_attention").narm_attention_backward(
            *map(native.pointer, (query, keys, hidden, v)), *_layout(batch_sizes, hidden),
            *map(native.pointer, (padded_columns(grad_local, LANES), grad_query, grad_keys, grad_hidden, grad_v_rows)))
        size = ctx.size
        return grad_query[:, :size], grad_keys[:, :size], grad_hidden[:, :size], grad_v_rows.sum(0)[:size], None


# The kernel's vector width in floats: 16 (AVX-512); a multiple of AVX2's 8 too.
LANES = 16


def _layout(batch_sizes: torch.Tensor, hidden: torch.Tensor) -> tuple:
    """The kernel's layout arguments (packed steps, rows, hidden size) and its thread count."""
    return (native.pointer(batch_sizes), ctypes.c_int64(len(batch_sizes)), ctypes.c_int64(int(batch_sizes[0])),
            ctypes.c_int64(hidden.size(1)), native.threads())


def packed_local_attention(query: torch.Tensor, keys: torch.Tensor, hidden: torch.Tensor, v: torch.Tensor,
                           cells: torch.Tensor, batch_sizes: torch.Tensor, lengths: torch.Tensor, length: int,
                           block_elements: int = 1 << 22, keep_elements: int = 0) -> torch.Tensor:
    """NARM's local context of every packed cell [cells, H], causal (t attends to j <= t).

    ``query``, ``keys``, ``hidden`` [cells, H] in packed order (:func:`packed_cells` gives
    ``cells``, the cells' flat positions in the padded [rows, length] batch, and
    ``batch_sizes``); ``lengths`` the rows' lengths in the padded batch. By the C kernel
    where it applies (float32 on CPU, a C compiler present); else by PyTorch
    (:class:`CausalLocalAttention`) on the padded batch.
    """
    if native.applies_to(query, keys, hidden, v) and native.kernel("narm_attention") is not None:
        return NativePackedLocalAttention.apply(query, keys, hidden, v, batch_sizes.contiguous())
    query, keys, hidden = (unpacked(x, cells, len(lengths), length) for x in (query, keys, hidden))
    local = CausalLocalAttention.apply(query, keys, hidden, v, lengths, block_elements, keep_elements)
    return local.flatten(0, 1).index_select(0, cells)


class BenchNARM(SharedEmbeddingScores, SequentialRecommender):
    train_on = "sequences"
    input_type = InputType.POINTWISE  # RecBole samples no negatives; any loss_type is ours
    # Largest [rows, queries, keys, hidden] block of the local attention built at once (training).
    attention_block_elements = 1 << 22
    # Blocks kept from forward for backward, up to this many numbers in all (128 MB);
    # the others are rebuilt in backward.
    attention_keep_elements = 1 << 25

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        embedding_size, hidden_size = config["embedding_size"], config["hidden_size"]
        embedding_dropout, context_dropout = config["dropout_probs"]

        self.item_embedding = nn.Embedding(self.n_items, embedding_size, padding_idx=0)
        self.embedding_dropout = Dropout(embedding_dropout)
        self.gru = nn.GRU(embedding_size, hidden_size, batch_first=True, bias=False)  # the paper's equations
        self.A1 = nn.Linear(hidden_size, hidden_size, bias=False)  # applied to h_t (the query)
        self.A2 = nn.Linear(hidden_size, hidden_size, bias=False)  # applied to h_j
        self.v = nn.Linear(hidden_size, 1, bias=False)
        self.context_dropout = Dropout(context_dropout)
        self.B = nn.Linear(2 * hidden_size, embedding_size, bias=False)
        self.softmax_loss = make_softmax_loss(config, dataset, self.n_items)

        # The GRU keeps PyTorch's own initialisation, as RecBole's NARM does: with Xavier
        # there it learned less per epoch (Diginetica-format data, H200: validation
        # MRR@20 .128 against .171 after 2 epochs).
        init_weights(self, self.item_embedding, keep_default=(self.gru,))

    # -- encoder ------------------------------------------------------------------
    def _packed_states(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor):
        """GRU states of every real position in packed order [cells, H], the cells' flat
        positions in ``item_seq`` and the packed ``batch_sizes`` (no work on padding)."""
        cells, batch_sizes = packed_cells(item_seq_len, item_seq.size(1))
        # items straight into the packed order: one gather, where pack_padded_sequence
        # copies (and its backward copies) per time step
        emb = self.embedding_dropout(self.item_embedding(item_seq.reshape(-1).index_select(0, cells)))
        return packed_gru(PackedSequence(emb, batch_sizes), self.gru).data, cells, batch_sizes

    def _hidden_states(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """GRU states after every position [B, L, H]; 0 after a row's end."""
        states, cells, _ = self._packed_states(item_seq, item_seq_len)
        return unpacked(states, cells, *item_seq.shape)

    def _attend(self, query: torch.Tensor, keys: torch.Tensor, hidden: torch.Tensor,
                visible: torch.Tensor) -> torch.Tensor:
        """``sum_j alpha_tj h_j`` for queries ``A1 h_t`` [B, T, H] over keys ``A2 h_j`` [B, J, H]."""
        alpha = self.v(torch.sigmoid(query.unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)  # [B, T, J]
        return (alpha * visible) @ hidden

    def _packed_contexts(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor):
        """``(c_g, c_l, cells)``: the global and local context of every real position, in
        packed order [cells, H], and the cells' flat positions in ``item_seq``."""
        states, cells, batch_sizes = self._packed_states(item_seq, item_seq_len)
        local = packed_local_attention(linear(states, self.A1.weight), linear(states, self.A2.weight), states,
                                       self.v.weight.view(-1), cells, batch_sizes, item_seq_len, item_seq.size(1),
                                       self.attention_block_elements, self.attention_keep_elements)
        return states, local, cells

    def _decode(self, global_context: torch.Tensor, local_context: torch.Tensor) -> torch.Tensor:
        context = self.context_dropout(torch.cat([global_context, local_context], dim=-1))
        return linear(context.flatten(0, -2), self.B.weight).view(*context.shape[:-1], -1)

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """The representation ``B c`` after every position: [B, L, embedding_size].

        Position ``t`` sees items ``<= t`` only; positions ``>= item_seq_len`` are 0.
        """
        global_context, local_context, cells = self._packed_contexts(item_seq, item_seq_len)
        return unpacked(self._decode(global_context, local_context), cells, *item_seq.shape)

    def last_representation(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        """The representation after the last real item: [B, embedding_size]."""
        hidden = self._hidden_states(item_seq, item_seq_len)
        last = self.gather_indexes(hidden, item_seq_len - 1)  # c_g
        visible = torch.arange(hidden.size(1), device=hidden.device).view(1, -1) < item_seq_len.view(-1, 1)
        local = self._attend(self.A1(last).unsqueeze(1), self.A2(hidden), hidden, visible.unsqueeze(1).to(hidden.dtype))
        return self._decode(last, local.squeeze(1))

    # -- RecBole interface ----------------------------------------------------------
    def calculate_loss(self, interaction) -> torch.Tensor:
        """Mean cross-entropy over every real position of whole-sequence rows."""
        # longest rows first (the loss is a mean over positions: row order is free), so
        # the rows still running at any position are the first ones
        item_seq_len, order = interaction[self.ITEM_SEQ_LEN].sort(descending=True)
        start, mask = loss_start_of(interaction), loss_mask_of(interaction)
        inputs, targets, real = position_targets(interaction[self.ITEM_SEQ][order], item_seq_len,
                                                 interaction[self.POS_ITEM_ID][order],
                                                 None if start is None else start[order],
                                                 None if mask is None else mask[order])
        global_context, local_context, cells = self._packed_contexts(inputs, item_seq_len)
        targets, real = targets.view(-1).index_select(0, cells), real.view(-1).index_select(0, cells)
        if not bool(real.all()):  # overlapping windows: context-only positions never reach the decoder
            keep = real.nonzero().squeeze(1)
            global_context, local_context, targets = (x.index_select(0, keep)
                                                      for x in (global_context, local_context, targets))
        return self.softmax_loss(self._decode(global_context, local_context), targets, self.item_embedding.weight)
