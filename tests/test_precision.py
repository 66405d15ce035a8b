"""`tf32`: the run's CUDA float32 precision, set per run and reset for the next one."""
import torch

from bench.config_keys import common_keys
from bench.precision import use_tf32
from bench.runner import run_once

PYTORCH_DEFAULTS = (False, True)  # matrix products in full float32; cuDNN may use TF32


def flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def test_on_off_and_absent():
    try:
        assert use_tf32(True) == flags() == (True, True)
        assert use_tf32(False) == flags() == (False, False)
        assert use_tf32(None) == flags() == PYTORCH_DEFAULTS
    finally:
        use_tf32(None)


def test_a_suite_may_set_it_and_a_run_applies_it_then_the_next_run_resets_it(diginetica_slice, tmp_path):
    assert "tf32" in common_keys()  # a suite's `tf32: true` is not an unknown key
    root, name = diginetica_slice
    try:
        result = run_once("pop", name, 0, tmp_path / "on", {"tf32": True}, data_root=root)
        assert flags() == (True, True) and result.config["tf32"] is True
        result = run_once("pop", name, 0, tmp_path / "default", {}, data_root=root)
        assert flags() == PYTORCH_DEFAULTS and "tf32" not in result.config  # absent: the stored config is unchanged
    finally:
        use_tf32(None)
