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


def _narm(n_items=30, embedding=6, hidden=5, gru_bias=False):
    """A NARM without dropout on a fake dataset: only the encoder is compared."""
    model = BenchNARM.__new__(BenchNARM)
    torch.nn.Module.__init__(model)
    model.item_embedding = torch.nn.Embedding(n_items, embedding, padding_idx=0)
    model.embedding_dropout = torch.nn.Identity()
    model.gru = torch.nn.GRU(embedding, hidden, batch_first=True, bias=gru_bias)
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


@pytest.mark.parametrize("gru_bias", [False, True], ids=["paper", "gru_bias"])
@pytest.mark.parametrize("kernels", [True, False], ids=["C kernels", "no compiler"])
@pytest.mark.parametrize("lengths,width", [([5, 2, 1, 4], 5), ([3, 3, 3], 4), ([7, 1, 6, 2, 7], 9)])
def test_narm_cpu_path_equals_the_plain_path_in_outputs_and_gradients(lengths, width, kernels, gru_bias, monkeypatch):
    if not kernels:
        monkeypatch.setattr(native, "kernel", lambda name: None)
    elif native.kernel("narm_attention") is None:
        pytest.skip("no C compiler")
    torch.manual_seed(0)
    model = _narm(gru_bias=gru_bias)
    if gru_bias:  # larger than PyTorch's init draws them, so that a misplaced bias shows
        with torch.no_grad():
            model.gru.bias_ih_l0.normal_()
            model.gru.bias_hh_l0.normal_()
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
                                             "A1.weight", "A2.weight", "v.weight"} | (
        {"gru.bias_ih_l0", "gru.bias_hh_l0"} if gru_bias else set())
    for name in plain[3]:
        torch.testing.assert_close(fast[3][name], plain[3][name], rtol=1e-4, atol=1e-5, msg=name)


def test_the_cpu_path_steps_aside_off_the_cpu():
    seq, lengths = _batch([2, 1], 3)
    meta = seq.to("meta")
    assert cpu_narm.position_contexts(_narm(), meta, lengths) is None
    assert cpu_narm.hidden_states(_narm(), meta, lengths) is None


# -- whole models: every CPU path of custom_models.cpu.ops switched on and off ------------
PAIRS_USERS = 12


@pytest.fixture(scope="module")
def pairs_data(tmp_path_factory):
    from bench.convert import convert

    root = tmp_path_factory.mktemp("cpu-paths")
    g = torch.Generator().manual_seed(1)
    lines = [f"{u} {int(i)}" for u in range(1, PAIRS_USERS + 1)
             for i in torch.randint(1, 40, (int(torch.randint(4, 12, (1,), generator=g)),), generator=g)]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    convert("pairs", root / "pairs.txt", "tiny", root / "atomic")
    return root / "atomic"


def _model(name: str, data_root, settings: dict):
    from bench.data import load_splits, make_config
    from bench.registry import resolve_model
    from bench.runner import build_model, train_loader

    spec = resolve_model(name)
    config = make_config(spec, "tiny", {"device": "cpu", "use_gpu": False, **settings}, data_root)
    splits = load_splits(config, data_root)
    torch.manual_seed(0)
    return build_model(spec, config, splits), next(iter(train_loader(spec, config, splits))), splits


def _dense(grad):
    return grad.to_dense() if grad.is_sparse else grad


@pytest.mark.parametrize("name,settings", [
    ("sasrec", {"loss_type": "CE", "dropout_prob": 0.0}),
    ("sasrec", {"loss_type": "BCE", "dropout_prob": 0.0}),
    ("narm", {"dropout_probs": [0.0, 0.0]}),
    ("gru4rec", {"dropout_p_embed": 0.0, "dropout_p_hidden": 0.0, "layers": [8], "n_sample": 5}),
    ("gru4rec", {"dropout_p_embed": 0.0, "dropout_p_hidden": 0.0, "layers": [8, 6], "constrained_embedding": False,
                 "embedding": 0, "loss": "cross-entropy", "n_sample": 0}),
    ("gru4rec", {"dropout_p_embed": 0.0, "dropout_p_hidden": 0.0, "layers": [8], "constrained_embedding": False,
                 "embedding": 4, "loss": "top1-max", "n_sample": 3}),
], ids=["sasrec-ce", "sasrec-bce", "narm", "gru4rec-bpr-max", "gru4rec-one-hot-ce", "gru4rec-embedding-top1max"])
def test_a_model_computes_the_same_with_its_cpu_paths_as_without(name, settings, pairs_data, monkeypatch):
    """Loss, every parameter's gradient and the full ranking's scores, with custom_models.cpu.ops
    (oneDNN products, coalesced sparse rows, the fused softmax loss) and with PyTorch alone."""
    from custom_models.cpu import ops as cpu_ops

    model, batch, splits = _model(name, pairs_data, settings)
    case = splits.cases("valid")

    def run():
        model.train()
        model.zero_grad()
        torch.manual_seed(5)  # BCE's negatives, GRU4Rec's samples
        if name == "gru4rec":
            lanes = 4
            items = torch.arange(1, 2 * lanes + 1).view(2, lanes) % (model.n_items - 1) + 1
            samples = torch.randint(1, model.n_items, (int(settings["n_sample"]),)) if settings["n_sample"] else None
            loss, _ = model.session_step(items[0], items[1], samples, model.zero_state(lanes))
        else:
            loss = model.calculate_loss(batch)
        loss.backward()
        grads = {n: _dense(p.grad).clone() for n, p in model.named_parameters() if p.grad is not None}
        model.eval()
        with torch.no_grad():
            scores = torch.cat([model.full_sort_predict(b) for b in case.batches()])
        return loss.detach(), grads, scores

    fast = run()
    monkeypatch.setattr(cpu_ops, "applies", lambda *tensors: False)
    plain = run()
    torch.testing.assert_close(fast[0], plain[0], rtol=1e-5, atol=1e-6)
    assert set(fast[1]) == set(plain[1]) and fast[1]
    for param in plain[1]:
        torch.testing.assert_close(fast[1][param], plain[1][param], rtol=1e-4, atol=1e-5, msg=param)
    torch.testing.assert_close(fast[2], plain[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,settings", [
    ("narm", {"dropout_probs": [0.25, 0.5]}),
    ("sasrec", {"loss_type": "CE", "dropout_prob": 0.2}),
    ("gru4rec", {"dropout_p_embed": 0.5, "dropout_p_hidden": 0.3, "layers": [8], "n_sample": 5}),
])
def test_our_models_draw_their_dropout_masks_from_the_kernel(name, settings, pairs_data, monkeypatch):
    """Every dropout of NARM, SASRec (but the attention weights') and GRU4Rec goes through the
    kernel on CPU: a training step is repeatable under a seed, and changes with it."""
    from torch import nn

    from custom_models.cpu import dropout as cpu_dropout

    model, batch, _ = _model(name, pairs_data, settings)
    assert not [m for m in model.modules() if type(m) is nn.Dropout]
    calls = []
    kernel_apply = cpu_dropout._NativeDropout.apply
    monkeypatch.setattr(cpu_dropout._NativeDropout, "apply", lambda *a: calls.append(a[1]) or kernel_apply(*a))

    def step(seed):
        model.train()
        model.zero_grad()
        torch.manual_seed(seed)
        if name == "gru4rec":
            items = torch.arange(1, 9).view(2, 4) % (model.n_items - 1) + 1
            loss, _ = model.session_step(items[0], items[1], torch.randint(1, model.n_items, (5,)),
                                         model.zero_state(4))
        else:
            loss = model.calculate_loss(batch)
        loss.backward()
        return loss.item(), [p.grad.to_dense().clone() for p in model.parameters() if p.grad is not None]

    first, again, other = step(1), step(1), step(2)
    # SASRec: the embeddings, then per block (2) the two residual branches and the FFN
    expected = {"narm": [0.25, 0.5], "sasrec": [0.2] * 7, "gru4rec": [0.5, 0.3]}[name]
    assert sorted(set(calls)) == sorted(set(expected)) and len(calls) == 3 * len(expected)
    assert first[0] == again[0] and all(torch.equal(a, b) for a, b in zip(first[1], again[1]))
    assert first[0] != other[0]
