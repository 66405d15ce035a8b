"""CPU speed paths: building blocks with the same arithmetic as their PyTorch counterparts.

The model files compute with PyTorch's own modules and functions, on any device; where
the tensors are float32 on the CPU (:func:`applies`), they call these instead (same
values and gradients: ``tests/test_cpu_ops.py``, ``tests/test_cpu_paths.py``).

Measured on this benchmark's 2-core AMD EPYC (AVX-512), one thread:

* :func:`linear` (``F.linear``): fp32 matrix products through oneDNN run at
  ~230 GFLOPS against ~100 for PyTorch's default BLAS (MKL, which does not use its
  best kernels on AMD CPUs). Forward and both gradients go through oneDNN. Not for
  very wide outputs under autograd: the weight gradient first copies the transposed
  [N, out] gradient (a full-catalogue softmax over Diginetica's 43k items: +20 ms per
  NARM step, so :func:`item_cross_entropy` takes that gradient from PyTorch's BLAS).
  Rows are padded to a multiple of :data:`ROW_QUANTUM`, because oneDNN compiles a
  kernel for every new shape and whole-sequence batches vary in size (NARM on
  MovieLens-100k, two threads, epochs alternating in one process: 2048 targets 2.19 -> 1.99 s,
  512 targets 2.75 -> 2.33 s).
* :func:`lookup` (``weight[items]``): the gradient is one coalesced sparse tensor
  over the distinct rows, so the optimiser touches only those rows, and nothing
  sorts duplicates or copies slices in backward (a sparse ``nn.Embedding`` does both).
* :func:`gru_cell` (``nn.GRUCell``): PyTorch's GRU equations on :func:`linear`.
* :func:`item_cross_entropy` (``F.cross_entropy`` over a full-catalogue ``F.linear``):
  PyTorch's fused softmax, kept for backward, which writes the logits' gradient straight
  into it; the three products go through oneDNN (forward + backward,
  ``python -m bench.benchmarks.softmax_loss_speed``: Diginetica's 43k items, 512
  targets, 204-224 -> 101-112 ms; ml-100k's 1.7k items, 512 / 2048 targets, 1.3-1.6x /
  2.1-2.3x;
  the item table's gradient alone, two threads: Diginetica 20 -> 9.4 ms, ml-100k at 2048
  targets 2.8 -> 1.5 ms).
* :func:`packed_gru` (a one-layer ``nn.GRU`` on a ``PackedSequence``): both time loops
  in a C kernel (``kernels/packed_gru.c``, built by :mod:`custom_models.native`), one
  pass per row and step; without a C compiler, PyTorch's own forward and a backward
  that recomputes every gate at once and leaves only two small ops per time step in
  the loop (NARM's GRU on MovieLens-100k, 12 rows of 50 items: 8.3 -> 4.4 ms forward +
  backward).
"""
from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from custom_models import native


def _onednn_linear_op():
    """oneDNN's fp32 ``x @ w.T + b`` for dense CPU tensors (the op TorchInductor uses), if present."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        x = torch.ones(2, 3)
        if torch.backends.mkldnn.is_available() and torch.allclose(op(x, x, None, "none", [], ""), x @ x.t()):
            return op
    except (AttributeError, RuntimeError):
        pass
    return None


_ONEDNN_LINEAR = _onednn_linear_op()


def applies(*tensors: torch.Tensor) -> bool:
    """Whether the CPU paths take these tensors: float32, on the CPU."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def _onednn_takes(*tensors: torch.Tensor) -> bool:
    """Whether oneDNN's product applies: float32 CPU tensors, and oneDNN present."""
    return _ONEDNN_LINEAR is not None and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


# oneDNN builds (JIT-compiles) a kernel for every new matrix shape, ~0.3-0.7 ms each. A
# batch of whole sequences has a different number of positions every time, so the row
# count of most products is new (NARM at 2048 targets on MovieLens-100k: ~200-400 new
# shapes an epoch, 5-15% of its time). Rows are padded with zeros to a multiple of
# ROW_QUANTUM, so a few shapes recur (at most ROW_QUANTUM - 1 zero rows: <2% at 2048).
ROW_QUANTUM = 32


def _padded_count(rows: int) -> int:
    """``rows`` rounded up to a multiple of :data:`ROW_QUANTUM`."""
    return -(-rows // ROW_QUANTUM) * ROW_QUANTUM


def _padded_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` [M, K] with zero rows appended up to a multiple of :data:`ROW_QUANTUM` (``x`` if it is one)."""
    extra = _padded_count(x.size(0)) - x.size(0)
    return F.pad(x, (0, 0, 0, extra)) if extra else x


def _weight_gradient(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``grad.T @ x`` [out, in] for row-major ``grad`` [M, out] and ``x`` [M, in].

    oneDNN reads its weight argument transposed in place, but copies a transposed
    input first, and a transposing copy of a tall matrix is slow (~1 ms for [2048, 384]).
    So the narrower of the two is the one copied: ``(x.T @ grad).T`` when ``grad`` is
    the wider (GRU weight gradients at 2048 rows: [384, 64] 0.70 -> 0.36 ms,
    [384, 128] 1.20 -> 0.77 ms). The result may be a transposed view.
    """
    if not _onednn_takes(grad, x):
        return grad.t() @ x
    if grad.size(1) <= x.size(1):
        return _ONEDNN_LINEAR(grad.t().contiguous(), x.t(), None, "none", [], "")
    return _ONEDNN_LINEAR(x.t().contiguous(), grad.t(), None, "none", [], "").t()


class _OneDnnLinear(torch.autograd.Function):
    """``x @ weight.T + bias`` with all three products (forward, both gradients) in oneDNN.

    Same arithmetic as ``F.linear``; on this benchmark's AMD CPUs oneDNN runs fp32
    matrix products at about twice the speed of PyTorch's default BLAS (MKL), and
    they are most of GRU4Rec's time. The rows go in padded (:func:`_padded_rows`), so
    the shapes oneDNN sees recur; the zero rows add nothing to the weight gradient.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        padded = _padded_rows(x)
        ctx.save_for_backward(padded, weight)
        ctx.has_bias, ctx.rows = bias is not None, x.size(0)
        return _ONEDNN_LINEAR(padded, weight, bias, "none", [], "")[:ctx.rows]

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_rows = _padded_rows(grad).contiguous()
        grad_x = _ONEDNN_LINEAR(grad_rows, weight.t(), None, "none", [], "")[:ctx.rows] if ctx.needs_input_grad[0] \
            else None
        grad_w = _weight_gradient(grad_rows, x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` (``F.linear``), through oneDNN for fp32 on CPU."""
    if _onednn_takes(x, weight):
        rows = x.reshape(-1, x.size(-1))
        return _OneDnnLinear.apply(rows, weight, bias).view(*x.shape[:-1], -1)
    return F.linear(x, weight, bias)


def gru_cell(x: torch.Tensor, h: torch.Tensor, cell: nn.GRUCell) -> torch.Tensor:
    """``cell(x, h)`` (PyTorch's GRU equations and gate order: reset, update, candidate) via :func:`linear`."""
    i_r, i_z, i_n = linear(x, cell.weight_ih, cell.bias_ih).chunk(3, 1)
    h_r, h_z, h_n = linear(h, cell.weight_hh, cell.bias_hh).chunk(3, 1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)  # (1 - z) * n + z * h


def _softmax_in_place(logits: torch.Tensor) -> torch.Tensor:
    """``torch.softmax(logits, 1)`` written over ``logits`` (bitwise the same: each row's
    max is read before any of its elements is overwritten)."""
    return torch.ops.aten._softmax.out(logits, 1, False, out=logits)


class _ItemCrossEntropy(torch.autograd.Function):
    """Mean ``-log softmax(output @ items.T)[target]`` with ``items = weight[1:]``.

    Row 0 of ``weight`` is padding, never a candidate; ``targets`` are item ids >= 1.
    Forward keeps the [N, n_items] probabilities (the logits are freed); backward turns
    them into ``p - onehot`` in place, multiplies that into the two gradients and scales
    these (by ``1 / N``), so no other [N, n_items] tensor is made or passed over.
    Backward can run only once.
    """

    @staticmethod
    def forward(ctx, output, weight, targets):
        # padded rows (see _padded_rows): their logits and probabilities are computed and
        # never used, and their zero outputs add nothing to the item table's gradient
        output = _padded_rows(output)
        logits = _ONEDNN_LINEAR(output, weight[1:], None, "none", [], "")
        # PyTorch's fused softmax passes over each row while it is in cache: half the
        # time of max, exp and sum as separate passes over the whole [N, n_items] matrix.
        # It runs in place: a fresh [N, n_items] output is new memory from the OS, and
        # its page faults made the softmax 2-6x slower inside a training step
        # ([544, 1682] on MovieLens-100k: 1.6 -> 0.6 ms) than alone.
        probs = _softmax_in_place(logits)
        column = targets - 1
        p_target = probs[torch.arange(len(targets), device=targets.device), column]
        losses = -torch.log(p_target)
        # a target more than ~70 nats below the log-partition underflows to p ~ 0: its
        # loss comes from its row's logits, computed again (the gradient needs only probs)
        far = torch.nonzero(p_target < 1e-30).squeeze(1)
        if len(far):
            far_logits = F.linear(output.index_select(0, far), weight[1:])
            losses[far] = torch.logsumexp(far_logits, 1) - far_logits.gather(1, column[far].view(-1, 1)).squeeze(1)
        ctx.save_for_backward(output, weight, targets, probs)
        ctx.spent = False
        return losses.mean()

    @staticmethod
    def backward(ctx, grad):
        if ctx.spent:
            raise RuntimeError("item_cross_entropy: backward through the same loss twice (its buffer is reused)")
        ctx.spent = True
        output, weight, targets, probs = ctx.saved_tensors
        probs[torch.arange(len(targets), device=targets.device), targets - 1] -= 1.0
        d_logits = probs  # times `scale`, applied to the two small products rather than to it
        scale = grad / len(targets)
        grad_output = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_output = _ONEDNN_LINEAR(d_logits, weight[1:].t(), None, "none", [], "")[:len(targets)].mul_(scale)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.zeros_like(weight)
            # (output^T d_logits)^T, with d_logits read in place as oneDNN's (transposed)
            # weight: half the time of PyTorch's d_logits^T @ output, and of oneDNN with
            # d_logits^T as the input, which copies it first
            grad_weight[1:] = _ONEDNN_LINEAR((output * scale).t().contiguous(), d_logits.t(), None, "none", [],
                                             "").t()
        return grad_output, grad_weight, None


def item_cross_entropy(output: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy(F.linear(output, weight[1:]), targets - 1)``: mean cross-entropy of
    ``output`` [N, d] against every item of ``weight`` [n_items, d] but padding row 0."""
    if len(targets) and int(targets.min()) < 1:
        raise ValueError("item_cross_entropy: target 0 is padding, never a candidate")
    if (_ONEDNN_LINEAR is not None and output.device.type == "cpu" and len(targets)
            and output.dtype == weight.dtype == torch.float32):
        return _ItemCrossEntropy.apply(output, weight, targets)
    return F.cross_entropy(F.linear(output, weight[1:]), targets - 1)


class _SharedRows(torch.autograd.Function):
    """``weight[items]`` for several index tensors, given their distinct ``rows`` and the
    position of each index in ``rows``. The gradient reaches ``weight`` as one coalesced
    sparse tensor over ``rows`` (what a sparse ``nn.Embedding`` gives after coalescing,
    without sorting every duplicate and without a dense gradient of the whole table)."""

    @staticmethod
    def forward(ctx, weight, rows, *positions):
        ctx.save_for_backward(rows, *positions)
        ctx.weight_shape = weight.shape
        table = weight.index_select(0, rows)
        return tuple(table.index_select(0, pos) for pos in positions)

    @staticmethod
    def backward(ctx, *grads):
        rows, *positions = ctx.saved_tensors
        summed = next(g for g in grads if g is not None).new_zeros((len(rows),) + tuple(ctx.weight_shape[1:]))
        for pos, grad in zip(positions, grads):
            if grad is not None:
                summed.index_add_(0, pos, grad)
        sparse = torch.sparse_coo_tensor(rows.view(1, -1), summed, ctx.weight_shape, is_coalesced=True,
                                         check_invariants=False)
        return (sparse, None) + (None,) * len(positions)


def lookup(weight: torch.Tensor, *items: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(weight[items[0]], weight[items[1]], ...)`` with a sparse, row-wise gradient."""
    rows, inverse = torch.unique(torch.cat(items), return_inverse=True)
    return _SharedRows.apply(weight, rows, *inverse.split([len(i) for i in items]))


class _PackedGRU(torch.autograd.Function):
    """A one-layer GRU over ``PackedSequence`` data, from a zero initial state.

    Forward is ``nn.GRU``'s. Autograd would then replay ~10 small ops per time step
    backwards; here the backward recomputes the gates of every (row, step) cell in a
    few vectorised ops from the stored outputs (``h_{t-1}`` is the previous cell's
    output), so the sequential loop keeps only what depends on the carried gradient:
    ``dh_{t-1} += dh_t z_t + (dh_t * dgates_t/dh_t) W_hh``, one elementwise product and
    one matrix product per step. The weight and input gradients are then one matrix
    product each over all cells.
    """

    @staticmethod
    def forward(ctx, data, batch_sizes, gru, w_ih, w_hh, b_ih=None, b_hh=None):
        out = gru(PackedSequence(data, batch_sizes))[0].data
        ctx.save_for_backward(data, w_ih, w_hh, out, b_ih, b_hh)
        ctx.batch_sizes = batch_sizes.tolist()
        return out

    @staticmethod
    def backward(ctx, grad_out):
        data, w_ih, w_hh, out, b_ih, b_hh = ctx.saved_tensors
        sizes = ctx.batch_sizes
        cells, size = out.shape
        starts = [0]
        for rows in sizes[:-1]:
            starts.append(starts[-1] + rows)
        # every [cells, *] matrix below has zero rows appended (see _padded_rows), so the
        # weight gradients' inner dimension recurs too; the zero rows get zero gradients
        padded = _padded_count(cells)
        h_prev = _previous_states(out, torch.as_tensor(sizes), padded)
        data = _padded_rows(data)
        gi, gh = linear(data, w_ih, b_ih), linear(h_prev, w_hh, b_hh)  # PyTorch's gate order: reset, update, new
        rz = torch.sigmoid(gi[:, :2 * size] + gh[:, :2 * size])
        r, z = rz[:, :size], rz[:, size:]
        n = torch.tanh(torch.addcmul(gi[:, 2 * size:], r, gh[:, 2 * size:]))
        # h_t = n + z (h_{t-1} - n): derivatives of the pre-activations w.r.t. h_t
        d_n = (1 - z) * (1 - n * n)
        through = torch.stack([d_n * gh[:, 2 * size:] * r * (1 - r),  # reset, through gh_r
                               (h_prev - n) * z * (1 - z),             # update, through gh_z
                               d_n * r,                                # new, through gh_n
                               z], 1)                                  # h_{t-1} directly
        # dh_{t-1} += [dh_t * through_t] @ [W_hh; I]: one product per step carries the gradient back
        carry = torch.cat([w_hh, torch.eye(size, dtype=w_hh.dtype, device=w_hh.device)])
        dh = out.new_zeros(padded, size)
        dh[:cells] = grad_out
        for t in range(len(sizes) - 1, 0, -1):
            rows, here, before = sizes[t], starts[t], starts[t - 1]
            gates = dh[here:here + rows].unsqueeze(1) * through[here:here + rows]
            dh[before:before + rows].addmm_(gates.view(rows, 4 * size), carry)
        d_gh = (dh.unsqueeze(1) * through[:, :3]).view(padded, 3 * size)
        d_gi = torch.cat([d_gh[:, :2 * size], dh * d_n], 1)
        biases = (d_gi.sum(0), d_gh.sum(0)) if b_ih is not None else ()  # padded rows: zero gradients
        return (linear(d_gi, w_ih.t())[:cells], None, None, _weight_gradient(d_gi, data),
                _weight_gradient(d_gh, h_prev), *biases)


def padded_columns(x: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    """``x`` [..., C] with zero columns appended up to a multiple of ``multiple``, contiguous."""
    extra = -x.size(-1) % multiple
    return F.pad(x, (0, extra)).contiguous() if extra else x.contiguous()


def _previous_states(out: torch.Tensor, sizes: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """``h_{t-1}`` of every packed cell [rows, H] (0 at t = 0; rows past the cells are 0 too):
    the same row's cell one step earlier, ``sizes[t-1]`` cells back (packed rows keep their order)."""
    cells, size = out.shape
    sizes = sizes.to(torch.long)
    previous = torch.arange(int(sizes[0]), cells) - torch.repeat_interleave(sizes[:-1], sizes[1:])
    h_prev = out.new_zeros(rows or cells, size)
    h_prev[int(sizes[0]):cells] = out.index_select(0, previous.to(out.device))
    return h_prev


def packed_cells(lengths: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where ``pack_padded_sequence`` takes its cells from, for rows [B, length] with
    ``lengths``: the flat positions ``row * length + t`` in packed order (time-major,
    rows longest first) and the packed ``batch_sizes`` (int64 on CPU, as PackedSequence keeps them)."""
    lengths = lengths.to(torch.long)
    order = torch.sort(lengths, descending=True, stable=True).indices
    running = torch.arange(length, device=lengths.device).unsqueeze(1) < lengths[order].unsqueeze(0)  # [T, B]
    t, k = running.nonzero(as_tuple=True)
    batch_sizes = running.sum(1)
    return order[k] * length + t, batch_sizes[batch_sizes > 0].cpu()


def unpacked(x: torch.Tensor, cells: torch.Tensor, rows: int, length: int) -> torch.Tensor:
    """Packed cells ``x`` [cells, ...] back in the padded batch [rows, length, ...] (0 on
    padding): the inverse of gathering at :func:`packed_cells`' positions."""
    return x.new_zeros((rows * length,) + x.shape[1:]).index_copy(0, cells, x).view(rows, length, *x.shape[1:])


class _NativePackedGRU(torch.autograd.Function):
    """:class:`_PackedGRU` with both time loops in the C kernel ``kernels/packed_gru.c``:
    a step is one pass per row (the recurrent product kept in registers) instead of a
    dozen small PyTorch ops. Forward keeps every cell's gates for backward; the input
    projection and the three gradient products stay oneDNN matrix products."""

    @staticmethod
    def forward(ctx, data, batch_sizes, w_ih, w_hh, b_ih=None, b_hh=None):
        out, gates = _native_gru_states(data, batch_sizes, w_ih, w_hh, keep_gates=True, b_ih=b_ih, b_hh=b_hh)
        ctx.save_for_backward(data, w_ih, w_hh, out, gates, batch_sizes)
        ctx.has_bias = b_ih is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        data, w_ih, w_hh, out, gates, sizes = ctx.saved_tensors
        cells, size = out.shape
        dh = grad_out.contiguous().clone()
        d_gi, d_gh = out.new_empty(cells, 3 * size), out.new_empty(cells, 3 * size)
        w_hh_wide = padded_columns(w_hh)
        _gru_kernel().packed_gru_backward(
            native.pointer(out), native.pointer(gates), native.pointer(w_hh_wide), native.pointer(sizes),
            ctypes.c_int64(len(sizes)), ctypes.c_int64(size), ctypes.c_int64(w_hh_wide.size(1)),
            native.threads(), native.pointer(dh), native.pointer(d_gi), native.pointer(d_gh))
        h_prev = _previous_states(out, sizes)
        biases = (d_gi.sum(0), d_gh.sum(0)) if ctx.has_bias else ()
        return (linear(d_gi, w_ih.t()), None, _weight_gradient(d_gi, data.contiguous()),
                _weight_gradient(d_gh, h_prev), *biases)


def _native_gru_states(data: torch.Tensor, batch_sizes: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                       keep_gates: bool, b_ih: torch.Tensor | None = None,
                       b_hh: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The packed GRU's states [cells, H] by the C kernel, and every cell's gates [cells, 4H]
    if ``keep_gates`` (for backward; evaluation keeps none)."""
    cells, size = len(data), w_hh.size(1)
    sizes = batch_sizes.contiguous()
    gi = linear(data, w_ih, b_ih).contiguous()
    out = data.new_empty(cells, size)
    gates = data.new_empty(cells, 4 * size) if keep_gates else None
    w_hh_t = padded_columns(w_hh.t())
    b_hh = None if b_hh is None else b_hh.detach().contiguous()
    _gru_kernel().packed_gru_forward(
        native.pointer(gi), native.pointer(w_hh_t), None if b_hh is None else native.pointer(b_hh),
        native.pointer(sizes), ctypes.c_int64(len(sizes)),
        ctypes.c_int64(size), ctypes.c_int64(w_hh_t.size(1)), native.threads(),
        native.pointer(out), None if gates is None else native.pointer(gates))
    return out, gates


def _gru_kernel():
    return native.kernel("packed_gru")


def packed_gru(packed: PackedSequence, gru: nn.GRU) -> PackedSequence:
    """``gru(packed)[0]`` for a one-layer unidirectional GRU, with or without biases: the C
    kernel's time loops (:class:`_NativePackedGRU`) for float32 on CPU where it builds, else
    PyTorch's forward and :class:`_PackedGRU`'s backward."""
    if gru.num_layers != 1 or gru.bidirectional or gru.proj_size:
        raise ValueError("packed_gru takes a one-layer, unidirectional nn.GRU without projection")
    w_ih, w_hh = gru.weight_ih_l0, gru.weight_hh_l0
    biases = (gru.bias_ih_l0, gru.bias_hh_l0) if gru.bias else ()
    if native.applies_to(packed.data, w_ih, w_hh, *biases) and _gru_kernel() is not None:
        data = (_NativePackedGRU.apply(packed.data, packed.batch_sizes, w_ih, w_hh, *biases)
                if torch.is_grad_enabled() else
                _native_gru_states(packed.data, packed.batch_sizes, w_ih, w_hh, False, *biases)[0])
    elif not torch.is_grad_enabled():
        return gru(packed)[0]
    else:
        data = _PackedGRU.apply(packed.data, packed.batch_sizes, gru, w_ih, w_hh, *biases)
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
