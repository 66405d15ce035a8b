"""NARM's CPU speed path: a drop-in replacement for the plain PyTorch encoder of
:class:`custom_models.narm.BenchNARM`, swapped in when the tensors are on the CPU.

Same inputs, same outputs, same gradients as the model's own ``hidden_states`` and
``position_contexts`` (``tests/test_cpu_paths.py``), computed without padding:

* the items are gathered into packed order (time-major, longest row first) and the GRU
  runs on the packed cells (:func:`custom_models.cpu.ops.packed_gru`, a C kernel with
  its backward);
* the local attention ``c_l[t] = sum_{j<=t} alpha_tj h_j`` is a C kernel
  (``kernels/narm_attention.c``, built on first use by :mod:`custom_models.native`) that
  never builds the [rows, T, J, H] sigmoid tensor; without a C compiler,
  :class:`CausalLocalAttention` computes it block by block on the padded batch.

On other devices (CUDA) these return None and the model's plain PyTorch path runs
(cuDNN's GRU, the attention from the positions with a loss only).
"""
from __future__ import annotations

import ctypes
import itertools

import torch
from torch.nn.utils.rnn import PackedSequence

from custom_models import native
from custom_models.cpu.ops import linear, packed_cells, packed_gru, padded_columns, unpacked


def applies(item_seq: torch.Tensor) -> bool:
    return item_seq.device.type == "cpu"


def packed_states(model, item_seq: torch.Tensor, item_seq_len: torch.Tensor):
    """GRU states of every real position in packed order [cells, H], the cells' flat
    positions in ``item_seq`` and the packed ``batch_sizes`` (no work on padding)."""
    cells, batch_sizes = packed_cells(item_seq_len, item_seq.size(1))
    # items straight into the packed order: one gather, where pack_padded_sequence
    # copies (and its backward copies) per time step
    emb = model.embedding_dropout(model.item_embedding(item_seq.reshape(-1).index_select(0, cells)))
    return packed_gru(PackedSequence(emb, batch_sizes), model.gru).data, cells, batch_sizes


def hidden_states(model, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor | None:
    """``model.hidden_states`` on CPU: [B, L, H], 0 after a row's end; None off the CPU."""
    if not applies(item_seq):
        return None
    states, cells, _ = packed_states(model, item_seq, item_seq_len)
    return unpacked(states, cells, *item_seq.shape)


def position_contexts(model, item_seq: torch.Tensor, item_seq_len: torch.Tensor, wanted: torch.Tensor | None = None):
    """``model.position_contexts`` on CPU: ``(c_g, c_l, cells)`` in packed order; None off the CPU.

    The kernel attends from every real position; those not ``wanted`` are dropped after."""
    if not applies(item_seq):
        return None
    states, cells, batch_sizes = packed_states(model, item_seq, item_seq_len)
    local = packed_local_attention(linear(states, model.A1.weight), linear(states, model.A2.weight), states,
                                   model.v.weight.view(-1), cells, batch_sizes, item_seq_len, item_seq.size(1),
                                   model.attention_block_elements, model.attention_keep_elements)
    if wanted is not None:
        keep = wanted.reshape(-1).index_select(0, cells).nonzero().squeeze(1)
        states, local, cells = states.index_select(0, keep), local.index_select(0, keep), cells.index_select(0, keep)
    return states, local, cells


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
