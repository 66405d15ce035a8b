"""RecBole's own models as reference rows: they run on both protocols, through the same
runner and evaluator, and our evaluator agrees with RecBole's metrics where no tie
can make them differ."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bench.reference as reference
from bench.data import load_splits, make_config, whole_sequence_rows
from bench.evaluator import metrics_from_ranks, rank_cases
from bench.registry import resolve_model
from bench.runner import build_model, flat, run_once
from bench.training import HarnessTrainer

SMALL = {
    "recbole:Pop": {},
    "recbole:ItemKNN": {"k": 20},
    "recbole:BPR": {"embedding_size": 16},
    "recbole:NARM": {"embedding_size": 16, "hidden_size": 16},
    "recbole:SASRec": {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1},
    "recbole:GRU4Rec": {"embedding_size": 16, "hidden_size": 16},
}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_adapters_keep_recbole_names_and_defaults(ml100k):
    root, name = ml100k
    for model, cls in (("recbole:Pop", reference.Pop), ("recbole:ItemKNN", reference.ItemKNN),
                       ("recbole:BPR", reference.BPR)):
        spec = resolve_model(model)
        assert spec.cls is cls and spec.class_name == model.split(":")[1]
        assert model in reference.REFERENCE_NOTES
    config = make_config(resolve_model("recbole:ItemKNN"), name, {"device": "cpu"}, root)
    assert (config["k"], config["knn_method"]) == (100, "item")  # RecBole's ItemKNN.yaml
    assert make_config(resolve_model("recbole:BPR"), name, {"device": "cpu"}, root)["embedding_size"] == 64
    narm = make_config(resolve_model("recbole:NARM"), name, {"device": "cpu"}, root)
    assert narm["hidden_size"] == 128 and narm["train_neg_sample_args"]["distribution"] == "none"


@pytest.mark.parametrize("model", list(SMALL))
def test_reference_rows_run_on_the_session_protocol(diginetica_slice, tmp_path, model):
    root, name = diginetica_slice
    result = run_once(model, name, 0, tmp_path, {"epochs": 1, **SMALL[model]}, data_root=root)
    metrics = flat(result)
    assert all(np.isfinite(v) and 0 <= v <= 1 for v in metrics.values())
    assert len(result.ranks["test_full"]) == result.num_test_cases
    if model not in ("recbole:Pop", "recbole:NARM", "recbole:GRU4Rec"):  # the last two barely move in 1 epoch
        assert metrics["recall@20"] > 0.02  # scored from the session's items, not a never-trained session id


def test_recbole_pop_ranks_exactly_as_ours(diginetica_slice, tmp_path):
    """Exact counts, and no masking: the session slice has targets repeated from their prefix."""
    root, name = diginetica_slice
    theirs = run_once("recbole:Pop", name, 0, tmp_path / "r", {}, data_root=root)
    ours = run_once("pop", name, 0, tmp_path / "o", {}, data_root=root)
    np.testing.assert_array_equal(theirs.ranks["test_full"], ours.ranks["test_full"])


@pytest.mark.parametrize("model", ["recbole:BPR", "recbole:ItemKNN"])
def test_reference_rows_run_on_leave_one_out(ml100k, tmp_path, model):
    root, name = ml100k
    result = run_once(model, name, 0, tmp_path, {"epochs": 1, **SMALL[model]}, data_root=root)
    metrics = flat(result)
    assert {"recall@10", "sampled_recall@10"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    if model == "recbole:ItemKNN":
        assert metrics["recall@20"] > 0.05  # user id based: the user's training items vote


def test_our_evaluator_agrees_with_recboles_metrics(ml100k, tmp_path):
    """RecBole's own full-sort evaluation of the same test split, on a model with no ties."""
    from recbole.data.utils import create_samplers, get_dataloader
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    root, name = ml100k
    spec = resolve_model("recbole:GRU4Rec")
    config = make_config(spec, name, {
        "device": "cpu", "use_gpu": False, "seed": 0, "epochs": 1, "embedding_size": 16, "hidden_size": 16,
        "checkpoint_dir": str(tmp_path), "metrics": ["Recall", "MRR", "NDCG"], "topk": [10],
        "metric_decimal_place": 12}, root)
    init_seed(0, True)
    splits = load_splits(config, root)
    model = build_model(spec, config, splits)
    # one quick epoch on each user's whole training sequence: trained, not random, scores
    train = get_dataloader(config, "train")(config, whole_sequence_rows(splits.train), None, shuffle=True)
    HarnessTrainer(config, model).fit(train, None, saved=False)

    test = splits.cases("test")
    ranks = rank_cases(model, test)["full"]
    # no ties: the target's score is unique in every case, so any tie rule gives the same rank
    with torch.no_grad():
        for batch in test.batches():
            scores = model.full_sort_predict(batch).view(len(batch), -1)
            target = scores.gather(1, batch["item_id"].view(-1, 1))
            assert int((scores == target).sum(1).max()) == 1
    ours = metrics_from_ranks(ranks, (10,))

    _, _, test_sampler = create_samplers(config, splits.dataset, [splits.train, splits.valid, splits.test])
    recbole_test = get_dataloader(config, "test")(config, splits.test, test_sampler, shuffle=False)
    theirs = Trainer(config, model).evaluate(recbole_test, load_best_model=False)
    for metric in ("recall@10", "mrr@10", "ndcg@10"):
        assert ours[metric] == pytest.approx(float(theirs[metric]), abs=1e-4), metric
    assert ours["recall@10"] > 0  # a real comparison, not 0 == 0
