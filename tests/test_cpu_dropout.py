"""custom_models.cpu.dropout: dropout's distribution with the mask from kernels/dropout.c,
the same mask in backward, repeatable under torch.manual_seed whatever the thread count,
PyTorch's own dropout wherever the kernel does not apply, and the models' dropouts swapped."""
from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bench  # noqa: F401
from custom_models.cpu import dropout as cpu_dropout
from custom_models.cpu.dropout import Dropout, dropout, swap_dropouts

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                                reason="no C compiler: PyTorch's dropout is used")

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(state: int) -> int:
    """The reference generator's output for a state (Steele et al. 2014), in Python integers."""
    state &= MASK64
    z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def reference_mask(n: int, seed: int, keep: float) -> list[bool]:
    """Number i kept when its 32-bit half (low for even i, high for odd) of the pair's hash is below keep * 2^32."""
    threshold = round(keep * 2 ** 32)
    halves = []
    for pair in range((n + 1) // 2):
        h = splitmix64(seed + (pair + 1) * GOLDEN)
        halves += [h & 0xFFFFFFFF, h >> 32]
    return [half < threshold for half in halves[:n]]


def test_the_first_hash_is_splitmix64s_published_first_output():
    # SplitMix64 from state 0: first outputs 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4
    assert splitmix64(GOLDEN) == 0xE220A8397B1DCDAF
    assert splitmix64(2 * GOLDEN) == 0x6E789E6AA1B965F4
    # so with seed 0 and p = 0.5 (threshold 2^31): 0x7B1DCDAF < 2^31 keeps x[0], 0xE220A839 drops x[1],
    # 0xA1B965F4 drops x[2], 0x6E789E6A keeps x[3]
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    out = cpu_dropout._apply(x, 0, 2 ** 31, 2.0)
    assert out[:4].tolist() == [2.0, 0.0, 0.0, 8.0]


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 70001])
@pytest.mark.parametrize("seed", [0, 12345, (1 << 62) - 1])
def test_the_kernel_keeps_exactly_the_reference_mask(n, seed):
    x = torch.arange(1, n + 1, dtype=torch.float32)
    out = cpu_dropout._apply(x, seed, round(0.7 * 2 ** 32), 1 / 0.7)
    expected = torch.where(torch.tensor(reference_mask(n, seed, 0.7)), x * torch.tensor(1 / 0.7), 0.0)
    assert torch.equal(out, expected)


def test_each_number_is_kept_with_probability_one_minus_p():
    x = torch.ones(200_000)
    for p in (0.1, 0.25, 0.5, 0.9):
        out = dropout(x, p)
        kept = (out != 0).double().mean().item()
        sigma = ((1 - p) * p / x.numel()) ** 0.5
        assert abs(kept - (1 - p)) < 5 * sigma, (p, kept)
        assert torch.allclose(out[out != 0], torch.tensor(1 / (1 - p)))


def test_the_gradient_has_the_forward_mask_and_scale():
    x = torch.rand(3001, 7) + 0.5  # no zeros, so the kept entries are the nonzero outputs
    x.requires_grad_(True)
    out = dropout(x, 0.3)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    kept = out != 0
    assert torch.allclose(x.grad, torch.where(kept, upstream / 0.7, 0.0))
    assert torch.allclose(out, torch.where(kept, x.detach() / 0.7, 0.0))


def test_repeatable_under_manual_seed_for_any_thread_count_and_new_each_call():
    threads = torch.get_num_threads()
    x = torch.ones(300_000)  # above the kernel's parallel threshold
    try:
        torch.set_num_threads(1)
        torch.manual_seed(3)
        one_thread = dropout(x, 0.5)
        torch.set_num_threads(2)
        torch.manual_seed(3)
        two_threads, following = dropout(x, 0.5), dropout(x, 0.5)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one_thread, two_threads)
    assert not torch.equal(two_threads, following)
    # consecutive masks are independent: about a quarter of the numbers kept by both at p = 0.5
    assert abs(((two_threads != 0) & (following != 0)).double().mean().item() - 0.25) < 0.005


def test_pytorchs_own_dropout_where_the_kernel_does_not_apply(monkeypatch):
    x = torch.randn(50, 8)
    assert torch.equal(dropout(x, 0.5, training=False), x)
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    doubles = x.double()
    torch.manual_seed(5)
    ours = dropout(doubles, 0.5)
    torch.manual_seed(5)
    assert torch.equal(ours, F.dropout(doubles, 0.5))
    monkeypatch.setattr(cpu_dropout, "_kernel", lambda: None)  # no compiler, or RECBENCH_NATIVE=0
    torch.manual_seed(5)
    module = Dropout(0.5)
    assert torch.equal(module(x), (torch.manual_seed(5), F.dropout(x, 0.5))[1])


def test_swap_dropouts_replaces_every_plain_dropout_and_keeps_the_state_dict():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.3),
                          nn.Sequential(nn.ReLU(), nn.Dropout(0.1), nn.Dropout(0.2, inplace=True)))
    keys = list(model.state_dict())
    swap_dropouts(model)
    assert type(model[1]) is Dropout and model[1].p == 0.3
    assert type(model[2][1]) is Dropout and model[2][1].p == 0.1
    assert type(model[2][2]) is nn.Dropout  # in place: left to PyTorch
    assert list(model.state_dict()) == keys
    model.eval()
    x = torch.randn(3, 4)
    assert torch.equal(model(x), model[2][0](model[0](x)))
