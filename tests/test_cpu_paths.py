"""Every CPU speed path against the plain PyTorch path it replaces (custom_models/cpu/):
the same outputs and the same gradients, with the C kernels and without them."""
from __future__ import annotations

import pytest
import torch

import bench  # noqa: F401
from custom_models import native
from custom_models.cpu import narm as cpu_narm
from custom_models.narm import BenchNARM


class _Config(dict):
    def __getitem__(self, key):
        return self.get(key)


def _narm(n_items=30, embedding=6, hidden=5):
    """A NARM without dropout on a fake dataset: only the encoder is compared."""
    model = BenchNARM.__new__(BenchNARM)
    torch.nn.Module.__init__(model)
    model.item_embedding = torch.nn.Embedding(n_items, embedding, padding_idx=0)
    model.embedding_dropout = torch.nn.Identity()
    model.gru = torch.nn.GRU(embedding, hidden, batch_first=True, bias=False)
    model.A1 = torch.nn.Linear(hidden, hidden, bias=False)
    model.A2 = torch.nn.Linear(hidden, hidden, bias=False)
    model.v = torch.nn.Linear(hidden, 1, bias=False)
    model.context_dropout = torch.nn.Identity()
    model.B = torch.nn.Linear(2 * hidden, embedding, bias=False)
    return model


def _batch(lengths, width, n_items=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.as_tensor(lengths)
    seq = torch.randint(1, n_items, (len(lengths), width), generator=g)
    seq[torch.arange(width).view(1, -1) >= lengths.view(-1, 1)] = 0
    return seq, lengths


def _plain(model, fn):
    """Run ``fn`` with the CPU path switched off, so the model's own plain path runs."""
    saved = cpu_narm.applies
    cpu_narm.applies = lambda item_seq: False
    try:
        return fn()
    finally:
        cpu_narm.applies = saved


@pytest.mark.parametrize("kernels", [True, False], ids=["C kernels", "no compiler"])
@pytest.mark.parametrize("lengths,width", [([5, 2, 1, 4], 5), ([3, 3, 3], 4), ([7, 1, 6, 2, 7], 9)])
def test_narm_cpu_path_equals_the_plain_path_in_outputs_and_gradients(lengths, width, kernels, monkeypatch):
    if not kernels:
        monkeypatch.setattr(native, "kernel", lambda name: None)
    elif native.kernel("narm_attention") is None:
        pytest.skip("no C compiler")
    torch.manual_seed(0)
    model = _narm()
    seq, lengths = _batch(lengths, width)

    def run():
        model.zero_grad()
        global_context, local_context, cells = model.position_contexts(seq, lengths)
        order = torch.argsort(cells)  # the CPU path's packed order -> row-major
        out = torch.cat([global_context, local_context], 1)[order]
        weights = torch.linspace(-1, 1, out.numel()).view_as(out)
        (out * weights).sum().backward()
        hidden = model.hidden_states(seq, lengths)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out.detach(), cells[order], hidden.detach(), grads

    fast = run()
    plain = _plain(model, run)
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-5, atol=1e-6)
    assert torch.equal(fast[1], plain[1])
    torch.testing.assert_close(fast[2], plain[2], rtol=1e-5, atol=1e-6)
    assert set(fast[3]) == set(plain[3]) == {"item_embedding.weight", "gru.weight_ih_l0", "gru.weight_hh_l0",
                                             "A1.weight", "A2.weight", "v.weight"}
    for name in plain[3]:
        torch.testing.assert_close(fast[3][name], plain[3][name], rtol=1e-4, atol=1e-5, msg=name)


def test_the_cpu_path_steps_aside_off_the_cpu():
    seq, lengths = _batch([2, 1], 3)
    meta = seq.to("meta")
    assert cpu_narm.position_contexts(_narm(), meta, lengths) is None
    assert cpu_narm.hidden_states(_narm(), meta, lengths) is None
