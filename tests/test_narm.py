"""BenchNARM: causal per-position training, padding, the prefix-row equivalence, and real training."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import bench  # noqa: F401
from bench.benchmarks.narm_pipeline_ablation import halves_swapped, recboles_weights_in_ours
from bench.data import load_splits, make_config, whole_sequence_rows
from bench.registry import resolve_model
from bench.rows import LOSS_MASK_FIELD
from custom_models.cpu import narm as cpu_narm
from custom_models.cpu.narm import CausalLocalAttention
from custom_models.narm import BenchNARM
from custom_models.per_position import PopularitySampledSoftmax, position_targets, training_item_counts
from recbole.data.interaction import Interaction
from training_checks import assert_whole_rows_loss_is_prefix_rows_loss, train_twice_and_pop

N_ITEMS = 30


def tiny_config(**overrides) -> dict:
    return {"USER_ID_FIELD": "session_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
            "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": 12,
            "device": "cpu", "embedding_size": 8, "hidden_size": 6, "dropout_probs": [0.25, 0.5],
            "loss_type": "CE", "n_negatives": 16, "sample_alpha": 0.5, **overrides}


def tiny_narm(seed: int = 0, **overrides) -> BenchNARM:
    torch.manual_seed(seed)
    dataset = SimpleNamespace(num=lambda field: N_ITEMS)
    return BenchNARM(tiny_config(**overrides), dataset).eval()


def random_rows(lengths, width, seed=1):
    gen = torch.Generator().manual_seed(seed)
    seq = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        seq[row, :n] = torch.randint(1, N_ITEMS, (n,), generator=gen)
    return seq, torch.tensor(lengths)


@pytest.mark.parametrize("block", [1 << 22, 50])  # one attention block, and many small ones
def test_a_future_item_never_changes_an_earlier_position(block):
    model = tiny_narm()
    model.attention_block_elements = block
    seq, lengths = random_rows([9, 12, 5], 12)
    with torch.no_grad():
        before = model(seq, lengths)
        for k in (1, 3):
            changed = seq.clone()
            changed[:, k] = changed[:, k] % (N_ITEMS - 1) + 1
            after = model(changed, lengths)
            torch.testing.assert_close(after[:, :k], before[:, :k], rtol=0, atol=1e-6)
            assert not torch.allclose(after[:, k], before[:, k])  # the check can fail


@pytest.mark.parametrize("block, keep", [(1 << 22, 0), (50, 0),  # rebuilt in backward: one block, many
                                         (1 << 22, 1 << 30), (50, 1 << 30),  # kept from forward
                                         (50, 100)])  # the first blocks kept, the others rebuilt
def test_local_attention_values_and_gradients_match_plain_autograd(block, keep):
    """The hand-written backward of the blocked causal attention against autograd on
    the direct formula c_l[t] = sum_{j<=t} v.sigmoid(q_t + k_j) h_j."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 2, 1, 4])
    query, keys, hidden = (torch.randn(4, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
                           for _ in range(3))
    v = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    inputs = (query, keys, hidden, v)
    real = torch.arange(5).view(1, -1) < lengths.view(-1, 1)

    def direct(query, keys, hidden, v):
        alpha = torch.sigmoid(query.unsqueeze(2) + keys.unsqueeze(1)) @ v  # [B, T, J]
        return ((alpha * torch.ones(5, 5, dtype=torch.float64).tril()) @ hidden)[real]

    def blocked(query, keys, hidden, v):
        return CausalLocalAttention.apply(query, keys, hidden, v, lengths, block, keep)[real]

    torch.testing.assert_close(blocked(*inputs), direct(*inputs))
    weights = torch.randn(int(real.sum()), 3, generator=gen, dtype=torch.float64)
    expected = torch.autograd.grad((direct(*inputs) * weights).sum(), inputs)
    loss = (blocked(*inputs) * weights).sum()
    for _ in range(2):  # a second backward through the same graph rebuilds what the first used up
        for a, b in zip(torch.autograd.grad(loss, inputs, retain_graph=True), expected):
            torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(blocked, inputs)


def test_padding_never_changes_a_real_position():
    model = tiny_narm()
    seq, lengths = random_rows([4, 7, 1], 7)
    wide = torch.cat([seq, torch.zeros(3, 9, dtype=torch.long)], dim=1)
    garbage = wide.clone()
    real = torch.arange(16).view(1, -1) < lengths.view(-1, 1)
    garbage[~real] = torch.randint(1, N_ITEMS, (int((~real).sum()),))
    with torch.no_grad():
        reference = model(seq, lengths)
        for padded in (wide, garbage):
            out = model(padded, lengths)
            torch.testing.assert_close(out[:, :7][real[:, :7]], reference[real[:, :7]], rtol=0, atol=1e-6)
            batch = Interaction({"item_id_list": padded, "item_length": lengths})
            torch.testing.assert_close(model.full_sort_predict(batch),
                                       model.full_sort_predict(Interaction({"item_id_list": seq, "item_length": lengths})),
                                       rtol=0, atol=1e-6)


def test_weight_init_xavier_is_the_default_and_pytorch_gives_the_public_narms_scales():
    """Xavier-normal std sqrt(2 / (fan_in + fan_out)): the [30, 8] item table 2/38 -> .229;
    PyTorch's defaults: item embeddings N(0, 1), the decoder U(+-1/sqrt(8)) as the public
    code's Linear(embedding 8, 2 * hidden) draws it. Item 0's row is 0 either way."""
    big = dict(embedding_size=64, hidden_size=32)
    default, xavier = tiny_narm(**big), tiny_narm(weight_init="xavier", **big)
    public = tiny_narm(weight_init="pytorch", **big)
    for a, b in zip(default.state_dict().values(), xavier.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the default draws exactly what xavier draws
    xavier_std = (2 / (N_ITEMS + 64)) ** 0.5
    assert abs(float(default.item_embedding.weight[1:].detach().std()) / xavier_std - 1) < 0.1
    assert abs(float(public.item_embedding.weight[1:].detach().std()) - 1) < 0.1
    assert float(public.B.weight.detach().abs().max()) <= 64 ** -0.5
    assert float(public.B.weight.detach().abs().max()) > 0.9 * 64 ** -0.5
    for model in (default, public):
        assert float(model.item_embedding.weight[0].detach().abs().max()) == 0
    with pytest.raises(ValueError, match="weight_init"):
        tiny_narm(weight_init="kaiming")


@pytest.mark.parametrize("path", ["cpu", "plain"])
def test_gru_bias_stays_causal_and_padding_blind(path, monkeypatch):
    """With ``gru_bias: true`` the plain path's GRU runs over the padding (the CPU path's
    packed GRU does not), which must still never reach a real position."""
    if path == "plain":
        monkeypatch.setattr(cpu_narm, "applies", lambda item_seq: False)
    plain, biased = tiny_narm(), tiny_narm(gru_bias=True)
    assert not plain.gru.bias and biased.gru.bias
    with torch.no_grad():
        biased.gru.bias_hh_l0.fill_(0.3)  # a large bias makes a leak through padding visible
    seq, lengths = random_rows([4, 7, 1], 7)
    garbage = torch.cat([seq, torch.randint(1, N_ITEMS, (3, 5))], dim=1)
    real = torch.arange(7).view(1, -1) < lengths.view(-1, 1)
    garbage[:, :7][~real] = 3
    with torch.no_grad():
        reference = biased(seq, lengths)
        torch.testing.assert_close(biased(garbage, lengths)[:, :7][real], reference[real], rtol=0, atol=1e-6)
        changed = seq.clone()
        changed[:, 2] = changed[:, 2] % (N_ITEMS - 1) + 1
        torch.testing.assert_close(biased(changed, lengths)[:, :2], reference[:, :2], rtol=0, atol=1e-6)
        # and the biases do take part: the same weights without them give other outputs
        unbiased = tiny_narm()
        unbiased.load_state_dict({k: v for k, v in biased.state_dict().items() if "bias" not in k})
        assert not torch.allclose(unbiased(seq, lengths)[real], reference[real])


def test_narm_public_builds_the_public_codes_model_and_narm_keeps_its_stored_config(diginetica_slice):
    root, name = diginetica_slice
    overrides = {"device": "cpu", "use_gpu": False}
    public_config = make_config(resolve_model("narm-public"), name, overrides, root)
    narm_config = make_config(resolve_model("narm"), name, overrides, root)
    assert public_config["gru_bias"] is True and public_config["weight_init"] == "pytorch"
    # unset for narm: its resolved config, and so the hash of every stored NARM run, is unchanged
    assert "gru_bias" not in narm_config and "weight_init" not in narm_config
    dataset = SimpleNamespace(num=lambda field: 500)
    torch.manual_seed(0)
    public = BenchNARM(public_config, dataset)
    assert public.gru.bias and abs(float(public.item_embedding.weight[1:].detach().std()) - 1) < 0.05
    # the suite's row for the initialisation alone: PyTorch's init, the paper's bias-free GRU
    init_config = make_config(resolve_model("narm-pytorch-init"), name, overrides, root)
    assert init_config["weight_init"] == "pytorch" and "gru_bias" not in init_config
    torch.manual_seed(0)
    init_only = BenchNARM(init_config, dataset)
    assert not init_only.gru.bias and abs(float(init_only.item_embedding.weight[1:].detach().std()) - 1) < 0.05


def test_last_representation_is_the_per_position_output_at_the_end():
    model = tiny_narm()
    seq, lengths = random_rows([3, 12, 6, 1], 12)
    with torch.no_grad():
        per_position = model(seq, lengths)
        last = model.last_representation(seq, lengths)
    torch.testing.assert_close(last, per_position[torch.arange(4), lengths - 1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("path", ["plain", "cpu"])
def test_a_loss_on_drawn_positions_is_the_mean_over_their_prefix_rows(path, monkeypatch):
    """A batch of i.i.d. targets (``loss_mask``): the loss is the mean cross-entropy of
    the drawn positions' prefix rows, each scored alone by ``last_representation``, on
    the plain path (the one a GPU runs: attention only from the drawn positions) and on
    the CPU path (every position, then the drawn ones)."""
    if path == "plain":
        monkeypatch.setattr(cpu_narm, "applies", lambda item_seq: False)
    model = tiny_narm()
    seq, lengths = random_rows([5, 2, 7, 4], 7)
    targets = torch.tensor([3, 9, 17, 28])  # the item after each row's last input
    drawn = torch.zeros(4, 7, dtype=torch.bool)
    drawn[0, [0, 3]] = drawn[1, 1] = drawn[2, [2, 5, 6]] = True  # row 3: nothing drawn
    batch = Interaction({"item_id_list": seq, "item_length": lengths, "item_id": targets, LOSS_MASK_FIELD: drawn})
    loss = model.calculate_loss(batch)

    expected = []
    for row, position in drawn.nonzero().tolist():
        prefix = seq[row:row + 1].clone()
        prefix[0, position + 1:] = 0
        target = targets[row] if position == int(lengths[row]) - 1 else seq[row, position + 1]
        scores = model.last_representation(prefix, torch.tensor([position + 1])) @ model.item_embedding.weight[1:].t()
        expected.append(torch.nn.functional.cross_entropy(scores, target.view(1) - 1))
    reference = torch.stack(expected).mean()
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    for got, want in zip(grads, torch.autograd.grad(reference, list(model.parameters()), allow_unused=True)):
        if want is None:
            assert got is None or not got.any()
        else:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_predict_is_the_full_sort_score_of_the_row_item():
    model = tiny_narm()
    seq, lengths = random_rows([3, 12, 6], 12)
    batch = Interaction({"item_id_list": seq, "item_length": lengths, "item_id": torch.tensor([4, 0, 29])})
    with torch.no_grad():
        full = model.full_sort_predict(batch)
        assert full.shape == (3, N_ITEMS)
        torch.testing.assert_close(model.predict(batch), full[torch.arange(3), batch["item_id"]])


@pytest.fixture(scope="module")
def digi_splits(diginetica_slice):
    root, name = diginetica_slice
    spec = resolve_model("narm")
    config = make_config(spec, name, {"device": "cpu", "use_gpu": False}, root)
    return config, load_splits(config, root)


@pytest.mark.parametrize("block", [1 << 30, 20_000])  # one attention block, and several
def test_whole_sequence_loss_equals_the_loss_over_recbole_prefix_rows(digi_splits, block):
    """On real sessions: the mean loss over every position of whole-session rows, times
    the number of positions, equals the summed cross-entropy of the last position of
    every prefix row of the same sessions, the rows RecBole trains NARM on."""
    config, splits = digi_splits
    torch.manual_seed(0)
    model = BenchNARM(config, splits.train).eval()
    model.attention_block_elements = block
    train = splits.train.inter_feat
    whole = whole_sequence_rows(splits.train).inter_feat
    sessions = whole["session_id"][:200]
    assert int(whole["item_length"][:200].max()) < 50  # not truncated: every prefix is in the window
    prefix_rows = train[torch.isin(train["session_id"], sessions).nonzero().squeeze(1)]
    whole_rows = whole[torch.arange(200)]
    assert len(prefix_rows) == int(whole_rows["item_length"].sum())

    assert_whole_rows_loss_is_prefix_rows_loss(model, whole_rows, prefix_rows)


@pytest.mark.parametrize("path", ["plain", "cpu"])
def test_with_recboles_weights_it_is_recboles_narm_on_real_prefix_rows(digi_splits, path, monkeypatch):
    """Our NARM, given the weights of RecBole's NARM, scores 300 real Diginetica prefix
    rows as RecBole's does and gets the same gradients from the same cross-entropy
    (over items 1.., our candidates): a step of ours is a step of RecBole's, so per
    epoch the two learn alike up to the draw of initial weights, batches and dropout."""
    from recbole.model.sequential_recommender.narm import NARM

    if path == "plain":
        monkeypatch.setattr(cpu_narm, "applies", lambda item_seq: False)
    config, splits = digi_splits
    config["n_layers"] = 1
    torch.manual_seed(3)
    theirs = NARM(config, splits.train).eval()
    ours = BenchNARM(config, splits.train).eval()
    recboles_weights_in_ours(theirs, ours)

    rows = splits.train.inter_feat[torch.arange(300)]
    seq, lengths, targets = rows["item_id_list"], rows["item_length"], rows["item_id"]
    assert int(lengths.min()) == 1 and int(lengths.max()) > 5  # short and longer prefixes
    their_output = theirs(seq, lengths)
    our_output = ours.last_representation(seq, lengths)
    torch.testing.assert_close(our_output, their_output, rtol=1e-5, atol=1e-6)

    def loss(model, output):
        return torch.nn.functional.cross_entropy(output @ model.item_embedding.weight[1:].t(), targets - 1)

    their_grads = dict(zip(["emb", "gru", "h_t", "h_j", "v", "B"], torch.autograd.grad(
        loss(theirs, their_output), [theirs.item_embedding.weight, theirs.gru.weight_hh_l0, theirs.a_2.weight,
                                     theirs.a_1.weight, theirs.v_t.weight, theirs.b.weight])))
    our_grads = dict(zip(["emb", "gru", "h_t", "h_j", "v", "B"], torch.autograd.grad(
        loss(ours, our_output), [ours.item_embedding.weight, ours.gru.weight_hh_l0, ours.A1.weight,
                                 ours.A2.weight, ours.v.weight, ours.B.weight])))
    their_grads["B"] = halves_swapped(their_grads["B"])
    for name in their_grads:
        torch.testing.assert_close(our_grads[name], their_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_position_targets_shift_left_and_end_with_the_row_target():
    seq = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0], [1, 2, 3, 4]])
    inputs, targets, real = position_targets(seq, torch.tensor([3, 1, 4]), torch.tensor([9, 10, 11]))
    assert inputs.tolist() == seq.tolist()
    assert targets.tolist() == [[6, 7, 9, 0], [10, 0, 0, 0], [2, 3, 4, 11]]
    assert real.tolist() == [[True, True, True, False], [True, False, False, False], [True] * 4]


def test_training_item_counts_count_every_item_event_of_the_training_sessions(digi_splits):
    _, splits = digi_splits
    counts = training_item_counts(splits.train, splits.dataset.item_num)
    whole = whole_sequence_rows(splits.train).inter_feat
    lengths = whole["item_length"]
    real = torch.arange(whole["item_id_list"].size(1)).view(1, -1) < lengths.view(-1, 1)
    events = torch.cat([whole["item_id_list"][real], whole["item_id"]])
    assert torch.equal(counts, torch.bincount(events, minlength=len(counts)).double())


def test_sampled_softmax_matches_a_direct_computation_with_logq_and_accidental_hits():
    counts = torch.tensor([0.0, 10, 5, 1, 0, 4])
    sampler = PopularitySampledSoftmax(counts, n_negatives=4, alpha=0.5)
    q = counts.sqrt() / counts.sqrt().sum()
    assert sampler.probs[0] == 0 and sampler.probs[4] == 0
    torch.testing.assert_close(sampler.probs, q.float())
    torch.manual_seed(0)
    out, weight = torch.randn(3, 4), torch.randn(6, 4)
    targets, negatives = torch.tensor([1, 2, 4]), torch.tensor([1, 3, 3, 5])
    loss = sampler.loss(out, targets, weight, negatives)
    expected = 0.0
    for row, target in enumerate(targets.tolist()):
        logits = [out[row] @ weight[target]]  # the target is not drawn from q: no correction
        logits += [out[row] @ weight[j] - torch.log(4 * q[j]) for j in negatives.tolist() if j != target]
        expected += -torch.log_softmax(torch.stack(logits), 0)[0]
    torch.testing.assert_close(loss, expected / 3)
    probs, log_q = sampler.on("cpu")  # copied to a device once, then reused every step
    assert sampler.on(torch.device("cpu"))[0] is probs
    torch.testing.assert_close(log_q, torch.log(q.float()))
    drawn = torch.bincount(PopularitySampledSoftmax(counts, 60_000, alpha=0.5).sample(), minlength=6)
    assert drawn[0] == 0 and drawn[4] == 0
    np.testing.assert_allclose(drawn.numpy() / 60_000, q.numpy(), atol=0.01)


def test_sampled_loss_trains_through_calculate_loss(digi_splits):
    config, splits = digi_splits
    torch.manual_seed(0)
    config["loss_type"] = "sampled"
    try:
        model = BenchNARM(config, splits.train)
    finally:
        config["loss_type"] = "CE"
    rows = whole_sequence_rows(splits.train).inter_feat[torch.arange(64)]
    loss = model.calculate_loss(rows)
    loss.backward()
    assert torch.isfinite(loss) and model.item_embedding.weight.grad.abs().sum() > 0


def test_trained_on_real_sessions_it_beats_pop_and_is_reproducible(diginetica_slice, tmp_path):
    root, name = diginetica_slice
    # Two short epochs with small batches (more steps) and a larger step size, to keep it quick.
    overrides = {"epochs": 2, "train_batch_size": 64, "learning_rate": 0.01}
    first, pop = train_twice_and_pop("narm", root, name, overrides, tmp_path)
    ours = first.metrics["test"]["full"]
    assert first.epochs_trained == 2 and first.num_test_cases == len(first.ranks["test_full"])
    for metric in ("recall@20", "mrr@20", "ndcg@10"):
        assert ours[metric] > 2 * pop[metric], (metric, ours[metric], pop[metric])


class SharedMasks:
    """Dropout masks drawn once per step and key, so that two models drop the same units."""

    def __init__(self, p: dict[str, float], seed: int):
        self.p, self.generator, self.drawn = p, torch.Generator().manual_seed(seed), {}

    def mask(self, key: str, shape) -> torch.Tensor:
        if key not in self.drawn:
            keep = 1 - self.p[key]
            self.drawn[key] = torch.bernoulli(torch.full(shape, keep), generator=self.generator) / keep
        return self.drawn[key]


class SharedMaskDropout(torch.nn.Module):
    def __init__(self, masks: SharedMasks, key: str, swap_halves: bool = False):
        super().__init__()
        self.masks, self.key, self.swap_halves = masks, key, swap_halves

    def forward(self, x):
        if not self.training:
            return x
        mask = self.masks.mask(self.key, x.shape)
        return x * (halves_swapped(mask) if self.swap_halves else mask)


def test_with_the_same_dropout_masks_it_trains_as_recboles_narm(digi_splits, monkeypatch):
    """Training under dropout: from RecBole's NARM's weights, on the same batches of real
    prefix rows, with the same units dropped (RecBole's ``[c_l; c_g]`` is our
    ``[c_g; c_l]``), ours follows RecBole's NARM step by step through 30 Adam steps (lr 1e-2: far from the start),
    loss for loss. So the two differ under dropout only by which units a seed drops."""
    from recbole.model.sequential_recommender.narm import NARM

    monkeypatch.setattr(cpu_narm, "applies", lambda item_seq: False)  # the plain path: masks over [B, L, E]
    config, splits = digi_splits
    config["n_layers"] = 1  # RecBole's NARM reads it; ours has the paper's one GRU layer
    torch.manual_seed(5)
    theirs, ours = NARM(config, splits.train), BenchNARM(config, splits.train)
    recboles_weights_in_ours(theirs, ours)
    masks = SharedMasks({"embedding": 0.25, "context": 0.5}, seed=7)
    theirs.emb_dropout, theirs.ct_dropout = SharedMaskDropout(masks, "embedding"), \
        SharedMaskDropout(masks, "context", swap_halves=True)
    ours.embedding_dropout, ours.context_dropout = SharedMaskDropout(masks, "embedding"), \
        SharedMaskDropout(masks, "context")
    theirs.train(), ours.train()
    their_optimizer = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    our_optimizer = torch.optim.Adam(ours.parameters(), lr=1e-2)

    rows = splits.train.inter_feat
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(11))
    their_losses, our_losses = [], []
    for step in range(30):
        batch = rows[order[step * 64:(step + 1) * 64]]
        seq, lengths, targets = batch["item_id_list"], batch["item_length"], batch["item_id"]
        masks.drawn = {}  # this step's masks
        for model, optimizer, output, losses in (
                (theirs, their_optimizer, lambda: theirs(seq, lengths), their_losses),
                (ours, our_optimizer, lambda: ours.last_representation(seq, lengths), our_losses)):
            loss = torch.nn.functional.cross_entropy(output() @ model.item_embedding.weight[1:].t(), targets - 1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert their_losses[-1] < their_losses[0] - 0.01  # it learned
    torch.testing.assert_close(torch.tensor(our_losses), torch.tensor(their_losses), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.B.weight, halves_swapped(theirs.b.weight), rtol=1e-4, atol=1e-5)
