"""BenchSASRec: causality, padding, the paper's positions, its losses, and real training."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import bench  # noqa: F401
from custom_models.per_position import PopularitySampledSoftmax
from custom_models.sasrec import BenchSASRec
from recbole.data.interaction import Interaction
from training_checks import train_twice_and_pop

N_ITEMS, MAX_LEN = 30, 12


def tiny_sasrec(seed: int = 0, **overrides) -> BenchSASRec:
    config = {"USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
              "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": MAX_LEN,
              "device": "cpu", "hidden_size": 8, "n_layers": 2, "n_heads": 2, "dropout_prob": 0.2,
              "loss_type": "BCE", "n_negatives": 16, "sample_alpha": 0.5, **overrides}
    torch.manual_seed(seed)
    dataset = SimpleNamespace(num=lambda field: N_ITEMS, field2seqlen={"item_id_list": MAX_LEN})
    return BenchSASRec(config, dataset).eval()


def random_rows(lengths, width, seed=1):
    gen = torch.Generator().manual_seed(seed)
    seq = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        seq[row, :n] = torch.randint(1, N_ITEMS, (n,), generator=gen)
    return seq, torch.tensor(lengths)


def rows(seq, lengths, targets=None) -> Interaction:
    fields = {"item_id_list": seq, "item_length": lengths}
    if targets is not None:
        fields["item_id"] = targets
    return Interaction(fields)


def test_a_future_item_never_changes_an_earlier_position():
    model = tiny_sasrec()
    seq, lengths = random_rows([9, 12, 5], 12)
    with torch.no_grad():
        before = model(seq, lengths)
        for k in (1, 3):
            changed = seq.clone()
            changed[:, k] = changed[:, k] % (N_ITEMS - 1) + 1
            after = model(changed, lengths)
            torch.testing.assert_close(after[:, :k], before[:, :k], rtol=0, atol=1e-6)
            assert not torch.allclose(after[:, k], before[:, k])  # the check can fail


def test_padding_never_changes_a_real_position():
    model = tiny_sasrec()
    seq, lengths = random_rows([4, 7, 1], 7)
    wide = torch.cat([seq, torch.zeros(3, 5, dtype=torch.long)], dim=1)
    garbage = wide.clone()
    real = torch.arange(12).view(1, -1) < lengths.view(-1, 1)
    garbage[~real] = torch.randint(1, N_ITEMS, (int((~real).sum()),))
    with torch.no_grad():
        reference = model(seq, lengths)
        for padded in (wide, garbage):
            out = model(padded, lengths)
            torch.testing.assert_close(out[:, :7][real[:, :7]], reference[real[:, :7]], rtol=0, atol=1e-6)
            assert (out[~real] == 0).all()
            torch.testing.assert_close(model.full_sort_predict(rows(padded, lengths)),
                                       model.full_sort_predict(rows(seq, lengths)), rtol=0, atol=1e-6)


def test_the_last_item_has_the_papers_last_position():
    """Left-padded to n items in the paper, the last item always sits at position n - 1:
    a 1-item history is the first item plus P_{n-1}, whatever the row's width."""
    model = tiny_sasrec()
    model.blocks = torch.nn.ModuleList()  # embedding + final norm only
    seq = torch.tensor([[7, 0, 0]])
    out = model(seq, torch.tensor([1]))[0, 0]
    scale = model.item_embedding.embedding_dim ** 0.5
    expected = model.final_norm(model.item_embedding.weight[7] * scale + model.position_embedding.weight[MAX_LEN - 1])
    torch.testing.assert_close(out, expected)


def test_predict_is_the_full_sort_score_of_the_row_item():
    model = tiny_sasrec()
    seq, lengths = random_rows([3, 12, 6], 12)
    targets = torch.tensor([4, 0, 29])
    with torch.no_grad():
        full = model.full_sort_predict(rows(seq, lengths))
        assert full.shape == (3, N_ITEMS)
        torch.testing.assert_close(model.predict(rows(seq, lengths, targets)), full[torch.arange(3), targets])


def per_position_reference(model, seq, lengths, targets):
    """(representation, target) of every real position, by plain loops."""
    out = model(seq, lengths)
    pairs = []
    for b in range(len(seq)):
        for t in range(int(lengths[b])):
            target = seq[b, t + 1] if t + 1 < lengths[b] else targets[b]
            pairs.append((out[b, t], int(target)))
    return pairs


def test_ce_loss_is_full_softmax_at_every_real_position():
    model = tiny_sasrec(loss_type="CE")
    seq, lengths = random_rows([3, 6, 1], 8)
    seq[0, 4] = 5  # garbage beyond the length: never a target
    targets = torch.tensor([4, 9, 2])
    with torch.no_grad():
        loss = model.calculate_loss(rows(seq, lengths, targets))
        terms = []
        for out, target in per_position_reference(model, seq, lengths, targets):
            logits = model.item_embedding.weight[1:] @ out  # item 0 (padding) is no candidate
            terms.append(-torch.log_softmax(logits, 0)[target - 1])
    assert len(terms) == 10
    torch.testing.assert_close(loss, torch.stack(terms).mean())


def test_bce_loss_is_one_positive_and_one_negative_per_real_position():
    model = tiny_sasrec(loss_type="BCE")
    seq, lengths = random_rows([3, 6, 1], 8)
    targets = torch.tensor([4, 9, 2])
    negatives = torch.arange(1, 11)
    drawn_for = []

    def fixed_negatives(position_targets):
        drawn_for.append(position_targets)
        return negatives

    model.uniform_negatives = fixed_negatives
    with torch.no_grad():
        loss = model.calculate_loss(rows(seq, lengths, targets))
        terms = []
        for (out, target), negative in zip(per_position_reference(model, seq, lengths, targets), negatives.tolist()):
            positive = out @ model.item_embedding.weight[target]
            negative = out @ model.item_embedding.weight[negative]
            terms.append(-torch.log(torch.sigmoid(positive)) - torch.log(1 - torch.sigmoid(negative)))
    torch.testing.assert_close(loss, torch.stack(terms).mean())
    expected_targets = [seq[0, 1], seq[0, 2], 4, *seq[1, 1:6].tolist(), 9, 2]
    assert drawn_for[0].tolist() == [int(x) for x in expected_targets]


def test_uniform_negatives_are_items_and_never_the_target():
    model = tiny_sasrec()
    torch.manual_seed(0)
    targets = torch.randint(1, N_ITEMS, (20_000,))
    negatives = model.uniform_negatives(targets)
    assert (negatives != targets).all()
    assert negatives.min() >= 1 and negatives.max() <= N_ITEMS - 1
    counts = torch.bincount(negatives, minlength=N_ITEMS)[1:].double()
    assert counts.min() > 0.8 * counts.mean()  # uniform over the items
    for target in (1, 7, N_ITEMS - 1):  # every other item equally often, whatever the target
        drawn = torch.bincount(model.uniform_negatives(torch.full((30_000,), target)), minlength=N_ITEMS)
        assert drawn[0] == 0 and drawn[target] == 0
        others = torch.cat([drawn[1:target], drawn[target + 1:]]).double()
        assert others.min() > 0.85 * others.mean() and others.max() < 1.15 * others.mean()
    tiny = tiny_sasrec()
    tiny.n_items = 3  # items 1 and 2: the negative is always the other one
    assert tiny.uniform_negatives(torch.tensor([1, 2, 1])).tolist() == [2, 1, 2]


def test_sampled_loss_option_trains():
    model = tiny_sasrec(loss_type="CE")
    seq, lengths = random_rows([3, 6, 1], 8)
    model.softmax_loss = PopularitySampledSoftmax(torch.arange(N_ITEMS).double(), 8, 0.5).loss
    model.train()
    loss = model.calculate_loss(rows(seq, lengths, torch.tensor([4, 9, 2])))
    loss.backward()
    assert torch.isfinite(loss) and model.position_embedding.weight.grad.abs().sum() > 0


def test_trained_on_movielens_it_beats_pop_and_is_reproducible(ml100k, tmp_path):
    root, name = ml100k
    # The paper's BCE loss; two short epochs with small batches and a larger step size.
    overrides = {"epochs": 2, "train_batch_size": 32, "learning_rate": 0.005}
    first, pop = train_twice_and_pop("sasrec", root, name, overrides, tmp_path)
    ours = first.metrics["test"]["full"]
    for metric in ("recall@20", "mrr@20", "ndcg@20"):
        assert ours[metric] > 1.3 * pop[metric], (metric, ours[metric], pop[metric])
    assert first.metrics["test"]["sampled"]["ndcg@10"] > 0.3  # SASRec's own protocol (paper: .59 on ML-1M)
