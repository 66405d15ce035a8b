"""Reports: statistics on known inputs, then a whole report built from real tiny runs."""
from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
from scipy.stats import wilcoxon

from bench import report
from bench.evaluator import metrics_from_ranks
from bench.published import PUBLISHED, published_for
from bench.report import BETTER, WORSE, holm, per_case, significance, wilcoxon_p, write_report
from bench.store import ResultStore, RunKey, dataset_manifest, record_from_result

# -- statistics on known inputs -------------------------------------------------------------


def test_per_case_metrics_average_to_the_evaluator_metrics():
    ranks = np.array([1.0, 1.5, 3.0, 10.0, 10.5, 20.0, 20.5, 400.0])
    expected = metrics_from_ranks(ranks)
    for metric, value in expected.items():
        assert per_case(ranks, metric).mean() == pytest.approx(value)
    np.testing.assert_allclose(per_case(ranks, "mrr@20"), [1, 1 / 1.5, 1 / 3, .1, 1 / 10.5, .05, 0, 0])


def test_wilcoxon_matches_scipy_on_a_textbook_example():
    # scipy's documented example: two-sided p = 0.041259765625 (exact distribution)
    d = np.array([6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75], dtype=float)
    base = np.full_like(d, 100.0)
    assert wilcoxon_p(base + d, base) == pytest.approx(0.041259765625)
    assert wilcoxon_p(base + d, base) == pytest.approx(wilcoxon(d).pvalue)
    assert wilcoxon_p(base, base) == 1.0  # never differ: nothing to test


def test_holm_on_known_values():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.02, 0.03]), [0.04, 0.04])  # step-down stays monotone
    np.testing.assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(holm([0.02]), [0.02])


def reciprocal_rank(ranks):
    return per_case(np.asarray(ranks, dtype=float), "mrr@20")


def test_marks_on_rank_arrays_where_the_answer_is_clear():
    rng = np.random.default_rng(0)
    base_ranks = rng.integers(2, 15, size=200).astype(float)
    values = {
        "baseline": reciprocal_rank(base_ranks),
        "always_first": reciprocal_rank(np.ones(200)),  # rank 1 on every case: better
        "always_missed": reciprocal_rank(np.full(200, 500.0)),  # outside the top 20: worse
        "same": reciprocal_rank(base_ranks),  # identical ranks: no difference at all
        "shuffled": reciprocal_rank(rng.permutation(base_ranks)),  # same distribution, no real effect
    }
    result = significance(values, "baseline")
    assert set(result) == {"always_first", "always_missed", "same", "shuffled"}
    assert result["always_first"]["mark"] == BETTER and result["always_missed"]["mark"] == WORSE
    assert result["same"] == {"p": 1.0, "p_holm": 1.0, "mark": ""}
    assert result["shuffled"]["mark"] == ""
    assert result["always_first"]["p_holm"] < 1e-10


def test_holm_correction_removes_a_mark_that_one_test_alone_would_give():
    # 27 of 40 paired differences +1, 13 -1: two-sided p = 0.0269 for one test
    diff = np.array([1.0] * 27 + [-1.0] * 13)
    base = np.full(40, 2.0)
    alone = significance({"base": base, "a": base + diff}, "base")
    assert alone["a"]["p"] == pytest.approx(wilcoxon(diff).pvalue) and alone["a"]["p"] < 0.05
    assert alone["a"]["mark"] == BETTER
    two = significance({"base": base, "a": base + diff, "b": base + diff[::-1]}, "base")
    assert two["a"]["p_holm"] == pytest.approx(2 * alone["a"]["p"])  # > 0.05
    assert two["a"]["mark"] == two["b"]["mark"] == ""


def test_published_numbers_are_labelled_and_keep_sasrec_beauty_apart():
    row, cell = published_for("diginetica", "full", "narm")
    assert row == "NARM" and cell["recall@20"] == pytest.approx(0.4970) and not cell["verified"]
    assert published_for("yoochoose1_64", "full", "narm")[1]["verified"]
    # The variant with the public code's initialisation is held to that code's number.
    row, cell = published_for("diginetica", "full", "narm-pytorch-init")
    assert row == "NARM (public PyTorch code)" and cell["mrr@20"] == pytest.approx(0.1849)
    assert published_for("yoochoose1_64", "full", "narm-pytorch-init")[0] == "NARM"
    assert published_for("ml-1m", "sampled", "sasrec")[1]["verified"]
    assert published_for("ml-1m", "full", "sasrec") is None  # sampled numbers never meet full tables
    # their ranking excludes seen items: beside our `unseen` table, never the full one
    assert published_for("beauty", "unseen", "sasrec")[1]["recall@10"] == pytest.approx(.0246)
    assert published_for("beauty", "full", "sasrec") is None
    assert published_for("beauty", "sampled", "sasrec") is None  # SASRec's Beauty is another dataset
    verified = {(d, r) for d, by in PUBLISHED.items() for p in by.values() for r, c in p.items() if c["verified"]}
    assert verified == {("yoochoose1_64", "NARM"), ("ml-1m", "SASRec"), ("ml-1m", "GRU4Rec")}


# -- a report from real runs ------------------------------------------------------------------

GRU = {"epochs": 1, "embedding_size": 16, "hidden_size": 16, "train_batch_size": 1024,
       "train_neg_sample_args": None}
SESSION_RUNS = [("pop", {}, (0, 1)), ("spop", {}, (0, 1)), ("recbole:GRU4Rec", GRU, (0,))]


def run_into(store, suite, data_root, dataset, model, overrides, seed, workdir):
    from bench.runner import run_once

    key = RunKey(suite, dataset, model, seed)
    result = run_once(model, dataset, seed, workdir / f"{dataset}-{model.replace(':', '-')}-{seed}",
                      overrides, data_root=data_root)
    manifest, digest = dataset_manifest(dataset, data_root)
    record, ranks = record_from_result(key, result, manifest, digest)
    store.write(key, record, ranks)


@pytest.fixture(scope="module")
def built(diginetica_slice, ml100k, tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("report")
    store = ResultStore(tmp / "results")
    root, name = diginetica_slice
    for model, overrides, seeds in SESSION_RUNS:
        for seed in seeds:
            run_into(store, "tiny", root, name, model, overrides, seed, tmp / "work")
    ml_root, ml_name = ml100k
    for model in ("pop", "spop"):
        run_into(store, "tiny", ml_root, ml_name, model, {}, 0, tmp / "work")
    store.write_failure(RunKey("tiny", name, "narm", 3), {"hidden_size": 100}, "RuntimeError: out of memory",
                        "Traceback (most recent call last):\n  ...\nRuntimeError: out of memory")
    meta = {"command": "bench run suites/tiny.yaml", "file": "suites/tiny.yaml",
            "datasets": [{"name": name, "published_key": "diginetica"}, {"name": ml_name}]}
    path = write_report("tiny", store, tmp / "reports", meta)
    return store, path, path.read_text(), name, ml_name


def tables(text: str) -> dict[str, list[dict]]:
    """``### title`` -> rows of the markdown table under it, as ``{header: cell}``."""
    out = {}
    for block in re.split(r"^### ", text, flags=re.M)[1:]:
        title, _, body = block.partition("\n")
        lines = body[body.index("|"):].split("\n\n")[0].splitlines()  # the first table only
        headers = [h.strip() for h in lines[0].strip("|").split("|")]
        out[title] = [dict(zip(headers, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]
    return out


def model_of(row: dict) -> str:
    """The registry id of a row: rows carry the papers' names (``S-POP``, ``GRU4Rec (RecBole)``)."""
    from bench.report import PAPER_NAMES

    label = row["Model"].replace(" (best baseline)", "")
    if label.endswith(" (RecBole)"):
        return "recbole:" + label[:-len(" (RecBole)")]
    return {name: model for model, name in PAPER_NAMES.items()}.get(label, label)


def test_rows_carry_the_papers_names():
    from bench.report import model_label

    assert [model_label(m) for m in ("narm", "sasrec-ce", "spop", "itemknn", "bprmf", "recbole:NARM")] == [
        "NARM", "SASRec (CE)", "S-POP", "Item-KNN", "BPR-MF", "NARM (RecBole)"]
    assert model_label("sasrec-kv") == "SASRec (BCE, Klenitskiy & Vasilev's settings)"


def mean_of(cell: str) -> float:
    return float(cell.replace("*", "").split()[0])


def test_session_table_rows_columns_and_bold(built):
    store, _, text, name, _ = built
    full = tables(text)[f"{name}: full ranking (all items), test, in %"]
    assert [model_of(r) for r in full] == ["pop", "spop", "recbole:GRU4Rec"]  # registry order, RecBole last
    assert list(full[0])[:8] == ["Model", "n", "Recall@10", "MRR@10", "NDCG@10", "Recall@20", "MRR@20", "NDCG@20"]
    assert [r["n"] for r in full] == ["2", "2", "1"]
    records = store.records("tiny")
    for row in full:
        model = model_of(row)
        for column, metric in (("Recall@20", "recall@20"), ("MRR@20", "mrr@20"), ("NDCG@10", "ndcg@10")):
            values = [r["metrics"]["test"]["full"][metric] for r in records
                      if r["dataset"] == name and r["model"] == model]
            assert mean_of(row[column]) == pytest.approx(100 * np.mean(values), abs=0.006)
            assert ("±" in row[column]) == (len(values) > 1)
    for column in ("Recall@10", "MRR@10", "NDCG@10", "Recall@20", "MRR@20", "NDCG@20"):
        best = max(mean_of(r[column]) for r in full)
        for r in full:
            assert r[column].startswith("**") == (mean_of(r[column]) == best), (column, r[column])
    assert full[2]["Model"].endswith("(RecBole)")


def test_session_significance_marks_agree_with_scipy_on_the_stored_ranks(built):
    store, _, text, name, _ = built
    full = tables(text)[f"{name}: full ranking (all items), test, in %"]
    records = [r for r in store.records("tiny") if r["dataset"] == name and r["status"] == "finished"]
    rr = {}
    for model in ("pop", "spop", "recbole:GRU4Rec"):
        runs = [store.load_ranks(r)["test_full"] for r in records if r["model"] == model]
        rr[model] = np.mean([np.where(x <= 20, 1.0 / x, 0.0) for x in runs], axis=0)
    best = max(("pop", "spop"), key=lambda m: rr[m].mean())
    assert best == "spop" and "(best baseline)" in full[1]["Model"]
    others = ["pop", "recbole:GRU4Rec"]
    raw = [wilcoxon(rr[m] - rr[best]).pvalue for m in others]
    small, large = np.argsort(raw)  # Holm for two tests, written out
    adjusted = np.empty(2)
    adjusted[small] = min(1.0, 2 * raw[small])
    adjusted[large] = max(adjusted[small], raw[large])
    by_model = {model_of(r): r for r in full}
    for m, p in zip(others, adjusted):
        mark = (BETTER if rr[m].mean() > rr[best].mean() else WORSE) if p < 0.05 else ""
        cell = by_model[m]["MRR@20"]
        assert cell.endswith(mark) and (mark or not cell.endswith((BETTER, WORSE)))
        assert float(by_model[m]["p (Holm)"]) == pytest.approx(p, rel=0.05)
    assert by_model["pop"]["MRR@20"].endswith(WORSE)  # popularity alone loses to S-POP on sessions
    assert "Wilcoxon signed-rank" in text and "Holm–Bonferroni" in text


def test_published_numbers_beside_ours(built):
    _, _, text, name, _ = built
    full = {model_of(r): r for r in tables(text)[f"{name}: full ranking (all items), test, in %"]}
    header = "Published Recall@20 / MRR@20"
    assert full["pop"][header] == "0.89 / 0.20 (POP; published (unverified))"
    assert full["spop"][header].startswith("21.06 / 13.68")
    ours = mean_of(full["spop"]["Recall@20"])
    assert float(full["spop"]["Δ"].split(" / ")[0]) == pytest.approx(ours - 21.06, abs=0.011)
    assert full["recbole:GRU4Rec"][header] == ""  # RecBole's GRU4Rec is another model: no paper row
    assert "- NARM: Recall@20 49.70, MRR@20 16.17: published (unverified), Wu et al., SR-GNN" in text


def test_full_and_sampled_are_never_mixed(built):
    store, _, text, _, ml_name = built
    all_tables = tables(text)
    full = all_tables[f"{ml_name}: full ranking (all items), test, as fractions"]
    sampled = all_tables[f"{ml_name}: sampled ranking (target + 100 sampled negatives), test, as fractions"]
    records = {r["model"]: r for r in store.records("tiny") if r["dataset"] == ml_name}
    for rows, protocol in ((full, "full"), (sampled, "sampled")):
        assert [model_of(r) for r in rows] == ["pop", "spop"]
        for row in rows:
            metrics = records[model_of(row)]["metrics"]["test"][protocol]
            assert mean_of(row["NDCG@10"]) == pytest.approx(metrics["ndcg@10"], abs=6e-5)
            assert mean_of(row["Recall@20"]) == pytest.approx(metrics["recall@20"], abs=6e-5)
    # S-POP ranks the user's own history first: nothing in full ranking, POP's numbers on sampled candidates
    assert mean_of(full[1]["Recall@20"]) == 0.0 and mean_of(sampled[1]["Recall@20"]) > 0.3
    session_titles = [t for t in all_tables if "sampled" in t and ml_name not in t]
    assert session_titles == []


def test_efficiency_failures_curves_and_provenance(built):
    store, path, text, name, _ = built
    eff = {model_of(r): r for r in tables(text)[f"{name}: efficiency (mean over seeds)"]}
    assert eff["recbole:GRU4Rec"]["epochs (best / trained)"] == "1.0 / 1.0"
    assert eff["pop"]["epochs (best / trained)"] == "–"  # nothing to train
    assert int(eff["recbole:GRU4Rec"]["parameters"].replace(",", "")) > 1000
    assert float(eff["pop"]["eval cases / s"].replace(",", "")) > 0
    failed = tables(text.replace("## Failed runs", "### Failed runs"))["Failed runs"]
    assert [(r["Model"], r["Seed"], r["Error"]) for r in failed] == [("narm", "3", "RuntimeError: out of memory")]
    links = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", text)
    assert links == [f"tiny/{name}-curves.png"]  # the only dataset with a trained model
    assert (path.parent / links[0]).stat().st_size > 1000
    assert "- Every run of the suite: `bench run suites/tiny.yaml`" in text  # a suite file outside bench/suites
    assert "- Last `bench run` that added runs here: `bench run suites/tiny.yaml`" in text
    assert failed[0]["Config"] == f"`{store.read(RunKey('tiny', name, 'narm', 3))['config_hash'][:12]}`"
    record = store.read(RunKey("tiny", name, "recbole:GRU4Rec", 0))
    assert record["config_hash"] in text and record["dataset_manifest_sha256"] in text
    assert record["environment"]["packages"]["recbole"] in text
    assert "<details><summary>" in text


def test_cli_rebuilds_the_same_report_from_the_store_alone(built):
    store, path, text, _, _ = built
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    out = path.parent.parent / "rebuilt"
    assert report.main(parser.parse_args(["--results", str(store.root), "--out", str(out)])) == 0
    rebuilt = (out / "tiny.md").read_text()
    strip = lambda t: re.sub(r"--out \S+", "", t)  # noqa: E731  (the one line that names the folder)
    assert strip(rebuilt) == strip(text)
    assert (out / path.stem / re.findall(r"\(([^)]+\.png)\)", text)[0].split("/", 1)[1]).is_file()


def test_no_results_is_one_clear_error(tmp_path):
    from bench.errors import InputError

    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    with pytest.raises(InputError, match="run `bench run` first"):
        report.main(parser.parse_args(["--results", str(tmp_path / "none")]))


def test_latex_has_every_markdown_table_as_booktabs(built, tmp_path):
    store, path, text, name, _ = built
    tex = write_report("tiny", store, tmp_path, latex=True).with_suffix(".tex").read_text()
    assert f"% bench report --results {store.root} --out {tmp_path} --suite tiny --format latex" in tex
    assert tex.count(r"\begin{tabular}") == tex.count(r"\toprule") == tex.count(r"\bottomrule") == len(tables(text))
    for title, rows in tables(text).items():
        from bench.report import latex_cell

        assert latex_cell(title) in tex
        for row in rows:
            assert latex_cell(row["Model"]) + " & " in tex
    assert r"\textbf{" in tex and r"$\pm$" in tex and "**" not in tex
    assert r"in \%" in tex  # LaTeX's comment character is escaped


def test_latex_cells_escape_and_mark_up():
    from bench.report import latex_cell

    assert latex_cell("**53.19** ± 0.12 †") == r"\textbf{53.19} $\pm$ 0.12 $^\dagger$"
    assert latex_cell("a_b & 5%") == r"a\_b \& 5\%"


def test_a_row_zero_by_design_says_why(built):
    _, _, text, _, ml_name = built
    section = text.split(f"\n## {ml_name}\n", 1)[1]
    spop = tables(section)[next(t for t in tables(section) if "full ranking" in t)]
    assert all(mean_of(row[h]) == 0 for row in spop if model_of(row) == "spop"
               for h in ("Recall@10", "MRR@20", "NDCG@20"))
    assert "S-POP is 0 on every metric. This is by design" in section


def test_a_suite_over_several_datasets_opens_with_mean_ranks_friedman_and_a_cd_diagram(
        diginetica_slice, ml100k, tmp_path):
    import pandas as pd
    from scipy.stats import friedmanchisquare

    store = ResultStore(tmp_path / "results")
    datasets = [diginetica_slice, ml100k]
    for root, name in datasets:
        for model in ("pop", "spop", "itemknn"):
            run_into(store, "multi", root, name, model, {}, 0, tmp_path / "work")
    text = write_report("multi", store, tmp_path / "reports").read_text()
    section = text.split("## Across datasets", 1)[1].split("\n## ", 1)[0]
    rows = {r["Model"]: r for r in tables("### x\n" + section[section.index("|"):])["x"]}
    assert set(rows) == {"POP", "S-POP", "Item-KNN"}
    # recompute the ranks from the stored records by hand
    main = {diginetica_slice[1]: "mrr@20", ml100k[1]: "ndcg@10"}
    value = {(r["dataset"], r["model"]): r["metrics"]["test"]["full"][main[r["dataset"]]]
             for r in store.records("multi")}
    frame = pd.DataFrame({m: [value[(d, m)] for d in main] for m in ("pop", "spop", "itemknn")}, index=list(main))
    want = frame.rank(axis=1, ascending=False).mean()
    for model, label in (("pop", "POP"), ("spop", "S-POP"), ("itemknn", "Item-KNN")):
        assert float(rows[label]["mean rank"]) == pytest.approx(want[model], abs=0.005)
    statistic, p = friedmanchisquare(*(frame[c] for c in frame.columns))
    assert f"chi-square {statistic:.2f}, p = {p:.2g}" in section
    assert (tmp_path / "reports" / "multi" / "critical-difference.png").stat().st_size > 1000


def test_fewer_than_three_shared_models_say_so_and_one_dataset_has_no_summary(built, diginetica_slice, tmp_path):
    assert "2 model(s) ran on every dataset; the Friedman test needs 3 or more." in built[2]  # pop, spop
    store = ResultStore(tmp_path / "results")
    root, name = diginetica_slice
    run_into(store, "single", root, name, "pop", {}, 0, tmp_path / "work")
    assert "## Across datasets" not in write_report("single", store, tmp_path / "reports").read_text()


def test_the_datasets_section_says_what_stands_for_time(built):
    _, _, text, name, ml_name = built
    section = text.split("## Datasets", 1)[1].split("\n## ", 1)[0]
    assert "Time (recency for kNN, splits)" in section
    # the fixture's meta names no converter format: the report does not guess
    assert "as converted" in section


def test_time_order_names_every_format():
    from bench.convert import FORMATS
    from bench.report import TIME_ORDER

    assert set(TIME_ORDER) == set(FORMATS)
    assert "session order" in TIME_ORDER["srgnn"]


def test_full_and_sampled_softmax_side_by_side_with_their_ratios(diginetica_slice, tmp_path):
    import torch

    torch.set_num_threads(1)
    store = ResultStore(tmp_path / "results")
    root, name = diginetica_slice
    small = {"epochs": 1, "embedding_size": 16, "hidden_size": 16}
    for model, extra in (("narm", {}), ("narm-sampled", {"n_negatives": 64}), ("pop", {})):
        run_into(store, "soft", root, name, model, {**small, **extra} if model != "pop" else {}, 0, tmp_path / "w")
    text = write_report("soft", store, tmp_path / "reports", {}).read_text()
    title = f"{name}: full softmax against sampled softmax (full ranking, test, in %)"
    rows = {model_of(r): r for r in tables(text)[title]}
    assert set(rows) == {"narm", "narm-sampled"}  # POP has no softmax to compare
    full, sampled = (store.read(RunKey("soft", name, m, 0)) for m in ("narm", "narm-sampled"))
    assert rows["narm"]["loss"] == "full softmax" and rows["narm-sampled"]["loss"].startswith("64 negatives")
    mrr = [r["metrics"]["test"]["full"]["mrr@20"] for r in (full, sampled)]
    assert rows["narm-sampled"]["MRR@20"] == f"{mrr[1] * 100:.2f}"
    assert rows["narm-sampled"]["MRR@20 / full's"] == f"{mrr[1] / mrr[0]:.2f}"
    per_epoch = [r["timings"]["seconds_per_epoch"] for r in (full, sampled)]
    assert rows["narm-sampled"]["speed-up per epoch"] == f"{per_epoch[0] / per_epoch[1]:.2f}x"
    assert rows["narm"]["speed-up per epoch"] == "1.00x"
    assert rows["narm"]["ran on"] == rows["narm-sampled"]["ran on"] == "1 thread"

    # the sampled run on 2 threads: its per-epoch time is no longer like for like
    key = RunKey("soft", name, "narm-sampled", 0)
    sampled["environment"]["torch_threads"] = 2
    store.write(key, sampled, store.load_ranks(key))
    text = write_report("soft", store, tmp_path / "reports", {}).read_text()
    rows = {model_of(r): r for r in tables(text)[title]}
    assert rows["narm-sampled"]["ran on"] == "2 threads"
    assert rows["narm-sampled"]["speed-up per epoch"] == f"{per_epoch[0] / per_epoch[1]:.2f}x (unlike runs)"
    assert rows["narm"]["speed-up per epoch"] == "1.00x"


def test_ran_on_names_threads_or_the_gpu_per_seed_where_seeds_differ():
    from bench.report import ran_on

    def record(seed, threads, gpu=None):
        return {"seed": seed, "environment": {"torch_threads": threads, "cuda_device": gpu}}

    assert ran_on([record(0, 1), record(1, 1)]) == "1 thread"
    assert ran_on([record(0, 2)]) == "2 threads"
    assert ran_on([record(2, 1), record(0, 2), record(1, 1)]) == "2 threads / 1 thread / 1 thread"  # seed order
    assert ran_on([record(0, 8, "NVIDIA H200"), record(1, 16, "NVIDIA H200")]) == "NVIDIA H200"
    assert ran_on([{"seed": 0}]) == "? threads"  # a record from before threads were stored


def test_a_partial_suite_says_which_runs_its_tables_lack():
    from bench.report import not_yet_run

    meta = {"datasets": [{"name": "digi"}, {"name": "beauty"}], "models": ["pop", "sasrec-ce"], "seeds": [0, 1, 2]}
    finished = [{"dataset": "digi", "model": "pop", "seed": s} for s in (0, 1, 2)] + \
               [{"dataset": "digi", "model": "sasrec-ce", "seed": 1},
                {"dataset": "beauty", "model": "pop", "seed": 0}, {"dataset": "beauty", "model": "pop", "seed": 2},
                {"dataset": "other", "model": "pop", "seed": 0}]  # not the suite's: ignored
    planned, lacking = not_yet_run(meta, finished)
    assert planned == 12  # 2 datasets x 2 models x 3 seeds
    assert lacking == ["digi: SASRec (CE) (`sasrec-ce`) seeds 0, 2", "beauty: POP (`pop`) seed 1",
                       "beauty: SASRec (CE) (`sasrec-ce`) seeds 0, 1, 2"]
    assert not_yet_run({"datasets": ["digi"]}, finished) == (0, [])  # no models or seeds listed
