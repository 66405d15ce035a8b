"""The float32 precision of a run's matrix products on CUDA (config key ``tf32``).

``tf32: true`` lets CUDA's float32 matrix products and cuDNN (the GRUs) use TF32
tensor cores (10-bit mantissa, ~8x the float32 rate on an H100/H200); ``tf32: false``
keeps full float32 everywhere; absent (the default), PyTorch's own defaults hold:
cuDNN may use TF32, plain matrix products may not. The flags are global to the
process, so a run sets them before it builds its model and every model of a run gets
the same setting; a runner process reused by the next run is reset to the defaults.
CPUs ignore them.
"""
from __future__ import annotations

import torch

# PyTorch's defaults, read once at import (before any run changed them)
_DEFAULTS = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)


def use_tf32(setting: bool | None) -> tuple[bool, bool]:
    """Apply ``setting`` (True, False or None: PyTorch's defaults) and return the
    resulting ``(matmul, cudnn)`` TF32 flags."""
    matmul, cudnn = _DEFAULTS if setting is None else (bool(setting), bool(setting))
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn
    return matmul, cudnn
