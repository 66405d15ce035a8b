"""custom_models.cpu.ops: each op computes what its PyTorch counterpart computes, gradients included."""
import shutil

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from custom_models.cpu import ops as fast_ops
from custom_models.cpu.ops import (gru_cell, item_cross_entropy, linear, lookup, packed_cells,
                                   packed_gru)


def test_cpu_ops_compute_what_pytorch_computes():
    gen = torch.Generator().manual_seed(3)
    x, w, b = (torch.randn(*shape, generator=gen, requires_grad=True) for shape in [(6, 5), (4, 5), (4,)])
    grad = torch.randn(6, 4, generator=gen)
    ours = linear(x, w, b)
    ours.backward(grad)
    mine = [t.grad.clone() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    theirs = torch.nn.functional.linear(x, w, b)
    theirs.backward(grad)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert all(torch.allclose(m, t.grad, atol=1e-5) for m, t in zip(mine, (x, w, b)))

    cell, h = torch.nn.GRUCell(5, 3), torch.randn(6, 3, generator=gen)
    assert torch.allclose(gru_cell(x, h, cell), cell(x, h), atol=1e-5)

    table = torch.randn(7, 3, generator=gen, requires_grad=True)
    a, c = torch.tensor([2, 5, 2]), torch.tensor([5, 0])
    left, right = lookup(table, a, c)
    assert torch.equal(left, table[a]) and torch.equal(right, table[c])
    (left.sum() + 2 * right.sum()).backward()
    assert table.grad.is_sparse
    assert table.grad.coalesce().indices().tolist() == [[0, 2, 5]]  # only the rows looked up
    assert torch.equal(table.grad.to_dense()[:, 0], torch.tensor([2.0, 0, 2, 0, 0, 3, 0]))


@pytest.mark.parametrize("out_features", [4, 9])  # narrower and wider than the input: both weight-gradient paths
@pytest.mark.parametrize("shape", [(1, 5), (31, 5), (64, 5), (3, 50, 5), "transposed"])
def test_linear_with_padded_rows_is_f_linear(shape, out_features):
    """``linear`` pads the rows to a multiple of ROW_QUANTUM (so oneDNN's shapes recur):
    neither the values nor any gradient may show it, whatever the row count or layout."""
    gen = torch.Generator().manual_seed(7)
    x = (torch.randn(5, 45, generator=gen).t() if shape == "transposed" else torch.randn(*shape, generator=gen))
    x.requires_grad_()
    w = torch.randn(out_features, 5, generator=gen, requires_grad=True)
    b = torch.randn(out_features, generator=gen, requires_grad=True)
    ours = linear(x, w, b)
    grad = torch.randn(ours.shape, generator=gen)
    mine = torch.autograd.grad(ours, (x, w, b), grad)
    theirs = torch.nn.functional.linear(x, w, b)
    assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-5)
    for m, t in zip(mine, torch.autograd.grad(theirs, (x, w, b), grad)):
        assert m.shape == t.shape and torch.allclose(m, t, atol=1e-4)


@pytest.mark.parametrize("bias", [False, True], ids=["bias-free", "biases"])
@pytest.mark.parametrize("dtype, path", [(torch.float64, "pytorch"), (torch.float32, "pytorch"),
                                         (torch.float32, "native")])
@pytest.mark.parametrize("lengths,sorted_rows", [([7, 7, 5, 3, 3, 1], True), ([2, 7, 1, 4], False), ([1, 1], True),
                                                  ([50] * 20 + [33] * 13, True)])
def test_packed_gru_matches_nn_gru_forward_and_every_gradient(lengths, sorted_rows, dtype, path, bias, monkeypatch):
    """float64 checks the arithmetic; float32 takes the C kernel's time loops (``native``,
    where a compiler is present) or oneDNN's products with padded rows (``pytorch``), whose
    zero rows must not reach any gradient."""
    if path == "pytorch":
        monkeypatch.setattr(fast_ops, "_gru_kernel", lambda: None)
    elif shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler: the PyTorch path runs")
    else:
        assert fast_ops._gru_kernel() is not None  # a compiler is here: the kernel must build
    gen = torch.Generator().manual_seed(len(lengths))
    gru = nn.GRU(4, 3, batch_first=True, bias=bias).to(dtype)
    if bias:  # PyTorch's init draws small biases: larger ones make a misplaced bias visible
        with torch.no_grad():
            gru.bias_ih_l0.normal_(0, 1, generator=gen)
            gru.bias_hh_l0.normal_(0, 1, generator=gen)
    x = torch.randn(len(lengths), max(lengths), 4, generator=gen, dtype=dtype, requires_grad=True)
    grad = torch.randn(len(lengths), max(lengths), 3, generator=gen, dtype=dtype)
    length_tensor = torch.tensor(lengths)

    def run(gru_fn):
        packed = pack_padded_sequence(x, length_tensor, batch_first=True, enforce_sorted=sorted_rows)
        out = pad_packed_sequence(gru_fn(packed), batch_first=True, total_length=max(lengths))[0]
        inputs = [x, gru.weight_ih_l0, gru.weight_hh_l0] + ([gru.bias_ih_l0, gru.bias_hh_l0] if bias else [])
        return out, torch.autograd.grad(out, inputs, grad)

    ours, our_grads = run(lambda packed: packed_gru(packed, gru))
    theirs, their_grads = run(lambda packed: gru(packed)[0])
    with torch.no_grad():  # evaluation takes the same path without the gradient bookkeeping
        packed = pack_padded_sequence(x, length_tensor, batch_first=True, enforce_sorted=sorted_rows)
        evaluated = pad_packed_sequence(packed_gru(packed, gru), batch_first=True, total_length=max(lengths))[0]
    assert torch.allclose(evaluated, theirs, atol=1e-5)
    exact = dtype == torch.float64
    assert torch.allclose(ours, theirs, atol=1e-12 if exact else 1e-5)
    for mine, reference in zip(our_grads, their_grads):
        assert torch.allclose(mine, reference, atol=1e-10 if exact else 1e-4, rtol=0 if exact else 1e-4)


@pytest.mark.parametrize("lengths", [[7, 5, 3, 1], [2, 7, 1, 4], [1], [3, 5, 3, 5, 2]])
def test_packed_cells_are_the_cells_pack_padded_sequence_takes(lengths):
    length = max(lengths) + 2  # trailing padding no row reaches
    x = torch.randn(len(lengths), length, 3, generator=torch.Generator().manual_seed(len(lengths)))
    cells, batch_sizes = packed_cells(torch.tensor(lengths), length)
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    assert torch.equal(batch_sizes, packed.batch_sizes) and batch_sizes.device.type == "cpu"
    rows, steps = cells // length, cells % length
    start = 0
    for t, n in enumerate(batch_sizes.tolist()):  # each time step: the rows still running, longest first
        assert steps[start:start + n].eq(t).all()
        running = rows[start:start + n]
        assert sorted(running.tolist()) == [r for r, n_items in enumerate(lengths) if n_items > t]
        assert torch.tensor(lengths)[running].diff().le(0).all()
        start += n
    if len(set(lengths)) == len(lengths):  # without ties the order is pack_padded_sequence's own
        assert torch.equal(x.reshape(-1, 3)[cells], packed.data)


def test_packed_gru_refuses_a_gru_it_does_not_implement():
    packed = pack_padded_sequence(torch.randn(2, 3, 4), torch.tensor([3, 2]), batch_first=True)
    for gru in (nn.GRU(4, 3, num_layers=2, batch_first=True), nn.GRU(4, 3, batch_first=True, bidirectional=True)):
        with pytest.raises(ValueError, match="one-layer, unidirectional"):
            packed_gru(packed, gru)


@pytest.mark.parametrize("n, n_items", [(1, 2), (37, 11), (300, 1683)])
def test_item_cross_entropy_is_cross_entropy_over_every_item_but_padding(n, n_items):
    gen = torch.Generator().manual_seed(n)
    output = torch.randn(n, 8, generator=gen, requires_grad=True)
    weight = (3 * torch.randn(n_items, 8, generator=gen)).requires_grad_()  # peaked softmax: a wrong target shows
    targets = torch.randint(1, n_items, (n,), generator=gen)
    ours = item_cross_entropy(output, weight, targets)
    ours.backward()
    mine = output.grad.clone(), weight.grad.clone()
    output.grad = weight.grad = None
    padding = torch.zeros(n_items)
    padding[0] = -torch.inf
    theirs = torch.nn.functional.cross_entropy(torch.nn.functional.linear(output, weight, padding), targets)
    theirs.backward()
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-5)
    assert torch.allclose(mine[0], output.grad, atol=1e-6) and torch.allclose(mine[1], weight.grad, atol=1e-6)
    assert torch.all(mine[1][0] == 0)  # padding never a candidate: no gradient


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows, columns", [(1, 1), (7, 3), (544, 1682), (3, 40000)])
def test_softmax_in_place_is_torch_softmax_bitwise(rows, columns, threads):
    logits = 6 * torch.randn(rows, columns, generator=torch.Generator().manual_seed(rows))
    expected = torch.softmax(logits, 1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        probs = fast_ops._softmax_in_place(logits)
    finally:
        torch.set_num_threads(before)
    assert probs.data_ptr() == logits.data_ptr() and torch.equal(probs, expected)


def test_item_cross_entropy_is_exact_where_the_target_probability_underflows():
    # logits 200 apart: the target's softmax probability is 0 in float32, its loss ~200
    output = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    weight = torch.tensor([[0.0, 0.0], [200.0, 0.0], [0.0, 0.0], [0.0, 3.0]], requires_grad=True)
    targets = torch.tensor([2, 3])  # row 0: logits 200 / 0 / 0, target the second (p = e^-200)
    ours = item_cross_entropy(output, weight, targets)
    padding = torch.tensor([-torch.inf, 0.0, 0.0, 0.0])
    theirs = torch.nn.functional.cross_entropy(torch.nn.functional.linear(output, weight, padding), targets)
    assert torch.isfinite(ours) and torch.allclose(ours, theirs, rtol=1e-6)
    ours.backward()
    grad = output.grad.clone()
    output.grad = None
    theirs.backward()
    assert torch.allclose(grad, output.grad, atol=1e-6)


def test_item_cross_entropy_refuses_padding_targets_and_a_second_backward():
    output, weight = torch.randn(3, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    with pytest.raises(ValueError, match="padding"):
        item_cross_entropy(output, weight, torch.tensor([1, 0, 2]))
    loss = item_cross_entropy(output, weight, torch.tensor([1, 4, 2]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="twice"):
        loss.backward()
