"""custom_models.native and its kernels (NARM's attention weights, the packed GRU's time
loops, GRU4Rec's BPR-max loss): the same values and gradients as the direct formulas,
independent of the thread count, and a clean fallback when they cannot build."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch

import bench  # noqa: F401
from torch.nn.utils.rnn import pack_padded_sequence

from custom_models import native
from custom_models.cpu.ops import packed_cells, packed_gru, unpacked
from custom_models.gru4rec import bpr_max_loss
from custom_models.cpu.narm import CausalLocalAttention, packed_local_attention

needs_compiler = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None,
                                    reason="no C compiler: the PyTorch path is used")


def attention_inputs(lengths, length, size, seed=0):
    gen = torch.Generator().manual_seed(seed)
    query, keys, hidden = (torch.randn(len(lengths), length, size, generator=gen, requires_grad=True)
                           for _ in range(3))
    v = torch.randn(size, generator=gen, requires_grad=True)
    return query, keys, hidden, v, torch.tensor(lengths)


def direct(query, keys, hidden, v, lengths):
    """c_l[t] = sum_{j<=t} v.sigmoid(q_t + k_j) h_j, in float64, 0 past a row's end."""
    length = query.size(1)
    alpha = torch.sigmoid(query.unsqueeze(2) + keys.unsqueeze(1)) @ v  # [B, T, J]
    real = (torch.arange(length).view(1, -1) < lengths.view(-1, 1)).to(query.dtype)
    return (alpha * torch.ones(length, length, dtype=query.dtype).tril()) @ hidden * real.unsqueeze(-1)


def packed_attention(query, keys, hidden, v, lengths):
    """:func:`packed_local_attention` on padded [B, T, H] inputs: their real cells in packed
    order in, the local contexts back at their padded positions (0 past a row's end)."""
    rows, length, _ = query.shape
    cells, batch_sizes = packed_cells(lengths, length)
    local = packed_local_attention(*(x.flatten(0, 1).index_select(0, cells) for x in (query, keys, hidden)), v,
                                   cells, batch_sizes, lengths, length)
    return unpacked(local, cells, rows, length)


def graph_of(tensor) -> set[str]:
    """The names of the autograd nodes that ``tensor`` came from."""
    seen, todo = set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(next_node for next_node, _ in node.next_functions)
    return {node.name() for node in seen}


@needs_compiler
@pytest.mark.parametrize("lengths, length, size", [([5, 2, 1, 4], 5, 3),  # unsorted rows, padding
                                                   ([50] * 9 + [31, 7], 50, 100),  # NARM's paper sizes
                                                   ([50, 50, 12], 50, 128)])  # H a multiple of 16
def test_native_attention_matches_the_direct_formula_values_and_gradients(lengths, length, size):
    assert native.kernel("narm_attention") is not None  # a compiler is here: the kernel must build
    inputs = attention_inputs(lengths, length, size)
    ours = packed_attention(*inputs)
    assert "NativePackedLocalAttentionBackward" in graph_of(ours)
    wide = [x.detach().double().requires_grad_() for x in inputs[:4]]
    expected = direct(*wide, inputs[4])
    torch.testing.assert_close(ours.double(), expected, rtol=1e-4, atol=1e-4)
    weights = torch.randn(ours.shape, generator=torch.Generator().manual_seed(1))
    mine = torch.autograd.grad((ours * weights).sum(), inputs[:4])
    theirs = torch.autograd.grad((expected * weights.double()).sum(), wide)
    for m, t in zip(mine, theirs):
        scale = t.abs().max().item()
        torch.testing.assert_close(m.double(), t, rtol=1e-4, atol=1e-4 * scale)


@needs_compiler
def test_native_attention_agrees_with_the_pytorch_path_and_ignores_the_thread_count():
    inputs = attention_inputs([50] * 6 + [20, 3], 50, 64, seed=2)
    weights = torch.randn(8, 50, 64, generator=torch.Generator().manual_seed(3))
    blocked = CausalLocalAttention.apply(*inputs, 1 << 22, 0)
    real = (torch.arange(50).view(1, -1) < inputs[4].view(-1, 1)).unsqueeze(-1)
    expected = torch.autograd.grad((blocked * weights * real).sum(), inputs[:4])
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = packed_attention(*inputs)
            results.append((out, *torch.autograd.grad((out * weights).sum(), inputs[:4])))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)  # rows and queries are split over threads, never a sum
    torch.testing.assert_close(results[0][0][real.expand_as(blocked)], blocked[real.expand_as(blocked)],
                               rtol=1e-4, atol=1e-5)
    for m, t in zip(results[0][1:], expected):
        torch.testing.assert_close(m, t, rtol=1e-4, atol=1e-4 * t.abs().max().item())


@needs_compiler
@pytest.mark.parametrize("lengths, inputs, size, bias", [([50] * 9 + [31, 7], 50, 100, False),  # NARM's paper sizes
                                                         ([50] * 9 + [31, 7], 50, 100, True),  # narm-public's GRU
                                                         ([50] * 40 + [12], 64, 128, False)])  # RecBole's, 2048 targets
def test_native_gru_matches_nn_gru_and_ignores_the_thread_count(lengths, inputs, size, bias):
    gen = torch.Generator().manual_seed(4)
    gru = torch.nn.GRU(inputs, size, batch_first=True, bias=bias)
    x = torch.randn(len(lengths), max(lengths), inputs, generator=gen, requires_grad=True)
    def packed():
        return pack_padded_sequence(x, torch.tensor(lengths), batch_first=True)

    weights = torch.randn(sum(lengths), size, generator=gen)
    params = (x, *gru.parameters())  # with biases: b_ih and b_hh too
    expected = gru(packed())[0].data
    expected_grads = torch.autograd.grad((expected * weights).sum(), params)
    threads, results = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = packed_gru(packed(), gru).data
            results.append((out, *torch.autograd.grad((out * weights).sum(), params)))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)  # a step's rows are split over threads, never a sum
    torch.testing.assert_close(results[0][0], expected, rtol=1e-4, atol=1e-5)
    for m, t in zip(results[0][1:], expected_grads):
        torch.testing.assert_close(m, t, rtol=1e-4, atol=1e-4 * t.abs().max().item())


def bpr_max_float64(R: torch.Tensor, bpreg: float) -> torch.Tensor:
    """BPR-max written out in float64: -log sum_j s_j sigmoid(r_k - r_j) + bpreg sum_j s_j r_j^2."""
    negatives = ~torch.eye(*R.shape, dtype=torch.bool)
    s = torch.softmax(R.masked_fill(~negatives, -torch.inf), 1)
    pos = R.diagonal().view(-1, 1)
    return -torch.log((s * torch.sigmoid(pos - R)).sum(1) + 1e-24) + bpreg * (s * R * R).sum(1)


@needs_compiler
@pytest.mark.parametrize("rows, cols, scale", [(4, 9, 2.0), (3, 3, 1.0),  # no extra samples
                                               (128, 128 + 2048, 0.5), (128, 128 + 2048, 40.0),  # saturated
                                               (37, 61, 5.0)])
@pytest.mark.parametrize("per_row_grad", [True, False])
def test_native_bpr_max_matches_the_formula_and_ignores_the_thread_count(rows, cols, scale, per_row_grad):
    assert native.kernel("bpr_max") is not None
    gen = torch.Generator().manual_seed(rows + cols)
    R = (scale * torch.randn(rows, cols, generator=gen)).requires_grad_()
    # training's gradient is loss.sum() / batch: one number expanded over the rows (stride 0)
    grad = torch.rand(rows, generator=gen) if per_row_grad else torch.tensor(1 / 128).expand(rows)
    wide = R.detach().double().requires_grad_()
    expected = bpr_max_float64(wide, 0.9)
    expected_grad, = torch.autograd.grad(expected, wide, grad.double())
    threads, results = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            loss = bpr_max_loss(R, 0.9)
            assert loss.grad_fn.name().startswith("NativeBPRMax")
            results.append((loss, *torch.autograd.grad(loss, R, grad)))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)  # rows are split over threads, never a sum
    loss, grad_R = results[0]
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_R.double(), expected_grad, rtol=1e-4, atol=1e-5 * expected_grad.abs().max().item())


@needs_compiler
def test_loading_a_kernel_keeps_subnormal_floats():
    """-ffast-math at link time would switch the whole process to flush-to-zero."""
    assert native.kernel("narm_attention") is not None and native.kernel("packed_gru") is not None
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    assert (tiny * 1.5).item() != 0.0


def test_without_a_kernel_the_pytorch_path_runs(monkeypatch):
    monkeypatch.setattr(native, "kernel", lambda name: None)
    inputs = attention_inputs([4, 2], 4, 3)
    out = packed_attention(*inputs)
    assert "CausalLocalAttentionBackward" in graph_of(out)
    expected = direct(*(x.detach().double() for x in inputs[:4]), inputs[4])
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)
    R = torch.randn(5, 12, generator=torch.Generator().manual_seed(6), requires_grad=True)
    loss = bpr_max_loss(R, 0.5)
    assert not loss.grad_fn.name().startswith("NativeBPRMax")
    torch.testing.assert_close(loss.double(), bpr_max_float64(R.detach().double(), 0.5), rtol=1e-5, atol=1e-6)


def test_a_failed_build_or_the_switch_gives_no_kernel(tmp_path):
    """A compiler that fails, and RECBENCH_NATIVE=0, both leave the PyTorch path (checked in fresh processes,
    since kernels are cached per process)."""
    code = "import bench; from custom_models import native; print(native.kernel('narm_attention') is None)"
    for env in ({"CC": "/bin/false"}, {"RECBENCH_NATIVE": "0"}):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**_environ(), "RECBENCH_CACHE": str(tmp_path / "cache"), **env})
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "True", env
    assert not list((tmp_path / "cache").glob("*.so"))  # nothing half-built left behind


@needs_compiler
def test_a_fresh_cache_builds_the_kernel_once(tmp_path):
    """A new machine (empty cache) compiles the kernel and loads it; the next process reuses the file."""
    code = "import bench; from custom_models import native; print(native.kernel('narm_attention') is not None)"
    env = {**_environ(), "RECBENCH_CACHE": str(tmp_path / "cache")}
    env.pop("RECBENCH_NATIVE", None)
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "True"
    assert len(list((tmp_path / "cache").glob("narm_attention-*.so"))) == 1


def _environ() -> dict:
    import os

    return dict(os.environ)
