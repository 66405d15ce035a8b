"""Fast CPU building blocks with the same arithmetic as their PyTorch counterparts.

Measured on this benchmark's 2-core AMD EPYC (AVX-512), one thread:

* :func:`linear` (``F.linear``): fp32 matrix products through oneDNN run at
  ~230 GFLOPS against ~100 for PyTorch's default BLAS (MKL, which does not use its
  best kernels on AMD CPUs). Forward and both gradients go through oneDNN.
* :func:`lookup` (``weight[items]``): the gradient is one coalesced sparse tensor
  over the distinct rows, so the optimiser touches only those rows, and nothing
  sorts duplicates or copies slices in backward (a sparse ``nn.Embedding`` does both).
* :func:`dropout` (``F.dropout``): the mask comes from ``rand``, ~3x cheaper than
  ``bernoulli_``.
* :func:`gru_cell` (``nn.GRUCell``): PyTorch's GRU equations on :func:`linear`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout, as ``F.dropout``; the mask from ``rand`` is ~3x cheaper than ``bernoulli_`` on CPU."""
    if not training or p <= 0:
        return x
    return x * (torch.rand_like(x) >= p).to(x.dtype).mul_(1.0 / (1.0 - p))


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


class _OneDnnLinear(torch.autograd.Function):
    """``x @ weight.T + bias`` with all three products (forward, both gradients) in oneDNN.

    Same arithmetic as ``F.linear``; on this benchmark's AMD CPUs oneDNN runs fp32
    matrix products at about twice the speed of PyTorch's default BLAS (MKL), and
    they are most of GRU4Rec's time.
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _ONEDNN_LINEAR(x, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = _ONEDNN_LINEAR(grad, weight.t(), None, "none", [], "") if ctx.needs_input_grad[0] else None
        grad_w = _ONEDNN_LINEAR(grad.t(), x.t(), None, "none", [], "") if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` (``F.linear``), through oneDNN for fp32 on CPU."""
    if _ONEDNN_LINEAR is not None and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32:
        return _OneDnnLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


def gru_cell(x: torch.Tensor, h: torch.Tensor, cell: nn.GRUCell) -> torch.Tensor:
    """``cell(x, h)`` (PyTorch's GRU equations and gate order: reset, update, candidate) via :func:`linear`."""
    i_r, i_z, i_n = linear(x, cell.weight_ih, cell.bias_ih).chunk(3, 1)
    h_r, h_z, h_n = linear(h, cell.weight_hh, cell.bias_hh).chunk(3, 1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)  # (1 - z) * n + z * h


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
