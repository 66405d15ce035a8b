"""GRU4Rec's CPU speed path: BPR-max and its gradient by the C kernel ``kernels/bpr_max.c``
(float32 on CPU, a C compiler present), a drop-in replacement for the plain PyTorch
:func:`custom_models.gru4rec.bpr_max_loss` (same values and gradient,
``tests/test_native.py``). Elsewhere it returns None and the model's PyTorch path runs.
"""
from __future__ import annotations

import ctypes

import torch

from custom_models import native


def bpr_max_loss(R: torch.Tensor, bpreg: float) -> torch.Tensor | None:
    if native.applies_to(R) and native.kernel("bpr_max") is not None:
        return NativeBPRMax.apply(R.contiguous(), bpreg)
    return None


class NativeBPRMax(torch.autograd.Function):
    """:func:`bpr_max_loss` and its gradient by ``kernels/bpr_max.c``: per row, [rows]."""

    @staticmethod
    def forward(ctx, R, bpreg):
        rows, cols = R.shape
        loss, stats = R.new_empty(rows), R.new_empty(rows, 4)
        native.kernel("bpr_max").bpr_max_forward(
            native.pointer(R), ctypes.c_int64(rows), ctypes.c_int64(cols), ctypes.c_float(bpreg),
            native.threads(), native.pointer(loss), native.pointer(stats))
        ctx.save_for_backward(R, stats)
        ctx.bpreg = bpreg
        return loss

    @staticmethod
    def backward(ctx, grad):
        R, stats = ctx.saved_tensors
        rows, cols = R.shape
        grad_R = torch.empty_like(R)
        native.kernel("bpr_max").bpr_max_backward(
            native.pointer(R), native.pointer(stats), native.pointer(grad.contiguous()), ctypes.c_int64(rows),
            ctypes.c_int64(cols), ctypes.c_float(ctx.bpreg), native.threads(),
            native.pointer(grad_R))
        return grad_R, None
