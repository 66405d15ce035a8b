"""Dropout's CPU speed path: the mask from the C kernel ``kernels/dropout.c``.

PyTorch's CPU dropout draws its mask with ``bernoulli_``, which uses MKL's parallel
generator on Intel CPUs only; elsewhere (this benchmark's AMD EPYC) it is one
Mersenne-Twister draw after another on one thread, ~9 ns a number. On MovieLens-100k
that was the largest single cost of a NARM step after the matrix products. The kernel
hashes a counter instead (splitmix64), in parallel and vectorised, and recomputes the
mask in backward from the same seed rather than storing it.

The distribution is dropout's: each number kept with probability ``1 - p`` (to
2^-32), independently, and scaled by ``1 / (1 - p)``. The random stream is not
PyTorch's: the seed of each call is one draw from PyTorch's default generator, so
``torch.manual_seed`` still makes a run repeatable, and the mask does not depend on
the number of threads (``tests/test_cpu_dropout.py``).

:class:`Dropout` is a drop-in ``nn.Dropout``: on float32 CPU tensors with the kernel
built it uses the kernel, elsewhere (CUDA, other dtypes, no C compiler,
``RECBENCH_NATIVE=0``) PyTorch's own dropout. :func:`swap_dropouts` puts it in place of
a model's ``nn.Dropout`` modules, which hold no state, so checkpoints are unchanged.
"""
from __future__ import annotations

import ctypes

import torch
import torch.nn.functional as F
from torch import nn

from custom_models import native


def _kernel():
    return native.kernel("dropout")


class _NativeDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float):
        ctx.seed = int(torch.randint(0, 1 << 62, ()).item())
        ctx.threshold = round((1.0 - p) * 2 ** 32)
        ctx.scale = 1.0 / (1.0 - p)
        return _apply(x.contiguous(), ctx.seed, ctx.threshold, ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _apply(grad.contiguous(), ctx.seed, ctx.threshold, ctx.scale), None


def _apply(x: torch.Tensor, seed: int, threshold: int, scale: float) -> torch.Tensor:
    """``x`` times the mask of ``seed`` (kept where the hash is below ``threshold``), times ``scale``."""
    out = torch.empty_like(x)
    _kernel().dropout_apply(native.pointer(x), ctypes.c_int64(x.numel()), ctypes.c_uint64(seed),
                            ctypes.c_uint64(threshold), ctypes.c_float(scale), native.threads(),
                            native.pointer(out))
    return out


def applies(x: torch.Tensor, p: float, training: bool) -> bool:
    """Whether the kernel computes ``F.dropout(x, p, training)``: a float32 CPU tensor in
    training, 0 < p < 1 (p = 0 and p = 1 keep PyTorch's exact special cases), kernel built."""
    return training and 0.0 < p < 1.0 and native.applies_to(x) and _kernel() is not None


def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True) -> torch.Tensor:
    """``F.dropout(x, p, training)``, with the kernel's mask where :func:`applies`."""
    if applies(x, p, training):
        return _NativeDropout.apply(x, p)
    return F.dropout(x, p, training)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the kernel's mask on float32 CPU tensors (not in place)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if applies(x, self.p, self.training):
            return _NativeDropout.apply(x, self.p)
        return super().forward(x)


def swap_dropouts(model: nn.Module) -> nn.Module:
    """Every plain ``nn.Dropout`` in ``model`` replaced by :class:`Dropout` (same ``p``); returns ``model``."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout and not child.inplace:
                setattr(parent, name, Dropout(child.p))
    return model
