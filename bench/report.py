"""`bench report`: rebuild every suite report from stored results, without training.

One markdown file per suite, ``<out>/<suite>.md``, with its plots in ``<out>/<suite>/``:

* **Accuracy**: one table per dataset and ranking protocol. Full ranking and sampled
  ranking (100 negatives) are never in the same table. Rows are models, columns
  Recall@10, MRR@10, NDCG@10, Recall@20, MRR@20, NDCG@20 as mean ± sample std over
  seeds (session data in %, leave-one-out data as fractions), the best mean of each
  column in bold.
* **Significance** against the best baseline (the baseline with the highest mean of the
  table's main metric): a two-sided Wilcoxon signed-rank test over the test cases,
  paired case by case, on the per-case main metric (reciprocal rank @20 for session
  data, NDCG@10 for leave-one-out), each model's per-case value first averaged over
  its seeds; cases where both models score the same are dropped (Wilcoxon's rule).
  The p-values of all models in a table are corrected with Holm–Bonferroni; ``†`` marks
  a model significantly better than the best baseline at alpha 0.05, ``‡`` worse.
  Averaging over seeds tests the models, not one lucky seed, and keeps one test per
  model, so the correction stays over one family per table.
* The published number beside ours (:mod:`bench.published`) and our difference from it.
* Efficiency per dataset, learning curves (PNG), failed runs, environment, exact
  configs with their hashes, dataset manifest checksums, and the command and commit.
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from bench.errors import InputError
from bench.protocol import FIT_PROTOCOLS, MAIN_METRIC
from bench.published import PUBLISHED, published_for, published_rows
from bench.store import RUN_LOCAL_KEYS, ResultStore, _git

METRICS = ("recall@10", "mrr@10", "ndcg@10", "recall@20", "mrr@20", "ndcg@20")
METRIC_LABELS = {"recall": "Recall", "mrr": "MRR", "ndcg": "NDCG"}
BASELINES = frozenset({"pop", "spop", "itemknn", "bprmf", "sknn", "vsknn", "stan", "vstan",
                       "recbole:Pop", "recbole:ItemKNN", "recbole:BPR"})
ALPHA = 0.05
BETTER, WORSE = "†", "‡"
PROTOCOL_TITLES = {"full": "full ranking (all items)",
                   "unseen": "full ranking, the user's seen items excluded",
                   "sampled": "sampled ranking (target + 100 sampled negatives)"}
TEST_NAME = ("two-sided Wilcoxon signed-rank test, paired by test case, on the per-case {metric} "
             "(each model's per-case value averaged over its seeds), Holm–Bonferroni corrected over "
             "the models of the table, alpha {alpha}")


# -- statistics ------------------------------------------------------------------------------

def per_case(ranks: np.ndarray, metric: str) -> np.ndarray:
    """One case's value of ``metric`` (``recall@K``, ``mrr@K``, ``ndcg@K``) from its target rank."""
    name, k = metric.split("@")
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks <= int(k)
    if name == "recall":
        return hit.astype(np.float64)
    if name == "mrr":
        return np.where(hit, 1.0 / ranks, 0.0)
    if name == "ndcg":
        return np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
    raise ValueError(f"unknown metric {metric!r}")


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        adjusted[idx] = running
    return adjusted


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired ``a - b``; 1.0 when they never differ."""
    from scipy.stats import wilcoxon

    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if not np.any(diff != 0):
        return 1.0
    return float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)


def significance(values: dict[str, np.ndarray], baseline: str, alpha: float = ALPHA) -> dict[str, dict]:
    """Every model of ``values`` (per-case metric, same cases) against ``baseline``.

    Returns ``{model: {"p": raw, "p_holm": adjusted, "mark": "†" | "‡" | ""}}``.
    """
    others = [m for m in values if m != baseline]
    raw = [wilcoxon_p(values[m], values[baseline]) for m in others]
    out = {}
    for model, p, p_adj in zip(others, raw, holm(raw)):
        mark = ""
        if p_adj < alpha:
            mark = BETTER if values[model].mean() > values[baseline].mean() else WORSE
        out[model] = {"p": p, "p_holm": float(p_adj), "mark": mark}
    return out


# -- formatting ------------------------------------------------------------------------------

class Units:
    """Session tables print % with 2 decimals, leave-one-out tables fractions with 4."""

    def __init__(self, protocol: str):
        self.percent = protocol == "session"
        self.scale, self.digits = (100.0, 2) if self.percent else (1.0, 4)
        self.label = "in %" if self.percent else "as fractions"

    def value(self, x: float) -> str:
        return f"{x * self.scale:.{self.digits}f}"

    def diff(self, x: float) -> str:
        return f"{x * self.scale:+.{self.digits}f}"


def metric_label(metric: str) -> str:
    name, k = metric.split("@")
    return f"{METRIC_LABELS[name]}@{k}"


def _num(x, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _mean(values: Iterable) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def ran_on(records: list[dict]) -> str:
    """What a row's runs trained on (``1 thread``, ``2 threads``, the GPU's name), per
    seed in seed order where its seeds differ: ``2 threads / 1 thread / 1 thread``."""
    def one(record):
        env = record.get("environment") or {}
        if env.get("cuda_device"):
            return env["cuda_device"]
        n = env.get("torch_threads")
        return "? threads" if n is None else f"{n} thread{'' if n == 1 else 's'}"

    each = [one(r) for r in sorted(records, key=lambda r: r.get("seed", 0))]
    return each[0] if len(set(each)) == 1 else " / ".join(each)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name)


def _first_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "unknown error").replace("|", "\\|")


def reference_notes() -> dict:
    """Notes on RecBole's reference rows, from ``bench.reference`` when it exists."""
    try:
        from bench.reference import REFERENCE_NOTES
    except ImportError:
        return {}
    return dict(REFERENCE_NOTES)


def is_reference(model: str) -> bool:
    return model.startswith("recbole:")


#: The papers' names of our models and variants; a table row carries these.
PAPER_NAMES = {
    "narm": "NARM", "narm-sampled": "NARM (sampled softmax)", "narm-public": "NARM (public PyTorch code's model)",
    "narm-pytorch-init": "NARM (PyTorch's default initialisation)",
    "sasrec": "SASRec", "sasrec-ce": "SASRec (CE)", "sasrec-sampled": "SASRec (sampled softmax)",
    "sasrec-kv": "SASRec (BCE, Klenitskiy & Vasilev's settings)",
    "gru4rec": "GRU4Rec", "pop": "POP", "spop": "S-POP", "itemknn": "Item-KNN", "bprmf": "BPR-MF",
    "sknn": "SKNN", "vsknn": "V-SKNN", "stan": "STAN", "vstan": "V-STAN",
}


#: Why a model can score 0 everywhere by design, said under a table where it does.
ZERO_BY_DESIGN = {
    "spop": "This is by design, not a bug: S-POP ranks the items already in the history first, and where every "
            "history holds at least 20 distinct items and no target repeats one of them (leave-one-out on "
            "ratings data such as MovieLens), its top 20 never holds the target.",
}


#: What stands for time in each source format (session kNN's recency, the converters' order).
TIME_ORDER = {
    "srgnn": "session order (the SR-GNN pickles have no timestamps)",
    "pairs": "file order (the format has no timestamps)",
    "user-lines": "file order (the format has no timestamps)",
    "diginetica-raw": "event dates and timeframes",
    "yoochoose-raw": "timestamps",
    "movielens": "timestamps",
}


def model_label(model: str) -> str:
    """The row name: the paper's name (``SASRec (CE)``); RecBole's rows ``NARM (RecBole)``.
    The registry id (``sasrec-ce``, ``recbole:NARM``) is in the report's config section."""
    if is_reference(model):
        return f"{model.split(':', 1)[1]} (RecBole)"
    return PAPER_NAMES.get(model, model)


# -- suite metadata --------------------------------------------------------------------------

def _dataset_meta(suite_meta: dict | None) -> dict[str, dict]:
    """``datasets`` of a suite as ``{name: {...}}``, whether given as a list or a mapping."""
    datasets = (suite_meta or {}).get("datasets") or {}
    if isinstance(datasets, dict):
        return {name: dict(v or {}) for name, v in datasets.items()}
    out = {}
    for entry in datasets:
        if isinstance(entry, str):
            out[entry] = {}
        else:
            out[entry.get("name") or entry.get("dataset")] = dict(entry)
    return out


def not_yet_run(suite_meta: dict | None, finished: list[dict], fitted: list[dict] = ()) -> tuple[int, list[str]]:
    """The suite's run count (datasets x models x seeds, from ``suite.json``) and, per
    dataset and model, the seeds without a finished run: what a partial report's tables
    lack; a seed whose early-stopped fit alone is stored (``fitted``, ``bench run
    --fit-only``) says so. (0, []) when the metadata does not list models and seeds."""
    datasets, models = list(_dataset_meta(suite_meta)), (suite_meta or {}).get("models") or []
    seeds = (suite_meta or {}).get("seeds") or []
    done = {(r.get("dataset"), r.get("model"), r.get("seed")) for r in finished}
    halfway = {(r.get("dataset"), r.get("model"), r.get("seed")) for r in fitted}
    lacking = []
    for dataset in datasets:
        for model in models:
            missing = [str(s) + (" (its early-stopped fit is stored: the refit remains)"
                                 if (dataset, model, s) in halfway else "")
                       for s in seeds if (dataset, model, s) not in done]
            if missing:
                lacking.append(f"{dataset}: {model_label(model)} (`{model}`) seed{'s' if len(missing) > 1 else ''} "
                               f"{', '.join(missing)}")
    return len(datasets) * len(models) * len(seeds), lacking


def published_key(dataset: str, suite_meta: dict | None) -> str | None:
    """The suite's explicit ``published_key`` for a dataset, else its name if published has it."""
    meta = _dataset_meta(suite_meta).get(dataset, {})
    if "published_key" in meta:
        return meta["published_key"]
    return dataset if dataset in PUBLISHED else None


def fitting_line(runs: dict[str, list[dict]], models: list[str]) -> str:
    """Which data the tested model of each row was fitted on (run records' ``fit_protocol``;
    records from before it was stored were trained on the training rows)."""
    by_protocol: dict[str, list[str]] = {}
    for m in models:
        for fit in sorted({r.get("fit_protocol", "train") for r in runs[m]}):
            by_protocol.setdefault(fit, []).append(model_label(m))
    parts = [f"{', '.join(names)}: {FIT_PROTOCOLS.get(fit, fit)}" for fit, names in by_protocol.items()]
    return "Fitting: " + "; ".join(parts) + "."


def model_order(models: Iterable[str], suite_meta: dict | None) -> list[str]:
    """Suite order if known, else ours (registry order) then RecBole's references."""
    listed = [m if isinstance(m, str) else m.get("name") for m in (suite_meta or {}).get("models", [])]
    try:
        from custom_models import MODELS
        ours = list(MODELS)
    except ImportError:
        ours = []

    def key(model):
        if model in listed:
            return (0, listed.index(model), model)
        if model in ours:
            return (1, ours.index(model), model)
        return (2 + is_reference(model), 0, model)

    return sorted(set(models), key=key)


# -- one suite -------------------------------------------------------------------------------

class SuiteReport:
    def __init__(self, suite: str, store: ResultStore, out_dir: Path, suite_meta: dict | None):
        self.suite, self.store, self.out_dir, self.meta = suite, store, Path(out_dir), suite_meta or {}
        records = store.records(suite)
        # A stored fit stage (bench run --fit-only) is half a run: not in the tables.
        self.fitted = [r for r in records if r.get("status") == "finished" and r.get("stage") == "fit"]
        self.finished = [r for r in records if r.get("status") == "finished" and r.get("stage") != "fit"]
        self.failed = [r for r in records if r.get("status") != "finished"]
        self.by_dataset: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for r in self.finished:
            self.by_dataset[r["dataset"]][r["model"]].append(r)
        self.datasets = sorted(self.by_dataset, key=self._dataset_position)
        self.plot_dir = self.out_dir / _slug(suite)
        self.notes = reference_notes()
        self.tables: list[tuple[str, str, list[str], list[list]]] = []  # (title, note, headers, rows), as built

    def _dataset_position(self, name: str):
        listed = list(_dataset_meta(self.meta))
        return (listed.index(name) if name in listed else len(listed), name)

    def protocol(self, dataset: str) -> str:
        protocols = {r.get("protocol") for rs in self.by_dataset[dataset].values() for r in rs}
        return "leave-one-out" if "leave-one-out" in protocols else "session"

    # -- markdown ---------------------------------------------------------------------------
    def build(self) -> str:
        lines = [f"# Suite `{self.suite}`", ""]
        if self.meta.get("description"):
            lines += [str(self.meta["description"]), ""]
        lines += self.provenance()
        lines += self.across_datasets()
        lines += ["## How to read the tables", "",
                  f"Every model is ranked by the same evaluator on the same test cases. Values are the mean ± "
                  f"sample standard deviation over seeds (`n` = seeds); the best mean of each column is in **bold**. "
                  f"Recall@K equals HR@K (one target per case). Full ranking and sampled ranking are never mixed in "
                  f"one table. Significance: {TEST_NAME.format(metric='main metric', alpha=ALPHA)}; the main metric "
                  f"is MRR@20 for session data and NDCG@10 for leave-one-out data. {BETTER} = significantly better "
                  f"than the best baseline, {WORSE} = significantly worse; the `p (Holm)` column gives the adjusted "
                  f"p-value. Baselines: {', '.join(sorted(BASELINES))}. Published numbers are reference points from "
                  f"the papers; \"published (unverified)\" marks a cell not re-checked against the paper's PDF; "
                  f"Δ = ours − published.", ""]
        for dataset in self.datasets:
            lines += self.dataset_section(dataset)
        lines += self.failures()
        lines += self.reference_section()
        lines += self.data_section()
        lines += self.environment_section()
        lines += self.config_section()
        return "\n".join(lines).rstrip() + "\n"

    def across_datasets(self) -> list[str]:
        """Which model is best over the suite's datasets (Demšar, JMLR 2006): each model's mean
        rank on the datasets' main metric (full ranking), a Friedman test, and the Nemenyi
        post-hoc test drawn as a critical-difference diagram (scikit-posthocs). Models that
        did not run on every dataset are left out; with one dataset there is no summary."""
        if len(self.datasets) < 2:
            return []
        import pandas as pd
        from scipy.stats import friedmanchisquare

        main = {d: MAIN_METRIC[self.protocol(d)] for d in self.datasets}
        scores: dict[str, dict[str, float]] = defaultdict(dict)
        for d in self.datasets:
            for m, rs in self.by_dataset[d].items():
                values = [r["metrics"]["test"]["full"].get(main[d]) for r in rs
                          if "full" in r.get("metrics", {}).get("test", {})]
                values = [v for v in values if v is not None]
                if values:
                    scores[m][d] = float(np.mean(values))
        models = [m for m in model_order(scores, self.meta) if len(scores[m]) == len(self.datasets)]
        out = ["## Across datasets", "",
               f"Main metric per dataset (full ranking, mean over seeds): "
               + ", ".join(f"{d}: {metric_label(main[d])}" for d in self.datasets) + ". Rank 1 = best on a "
               "dataset, ties share the mean rank. Only models that ran on every dataset are ranked.", ""]
        if len(models) < 3:
            return out + [f"{len(models)} model(s) ran on every dataset; the Friedman test needs 3 or more.", ""]
        frame = pd.DataFrame({model_label(m): [scores[m][d] for d in self.datasets] for m in models},
                             index=self.datasets)
        ranks = frame.rank(axis=1, ascending=False)
        mean_rank = ranks.mean().sort_values()
        statistic, p_value = friedmanchisquare(*(frame[c].to_numpy() for c in frame.columns))
        from tabulate import tabulate

        rows = [[name, f"{mean_rank[name]:.2f}", *(f"{frame.at[d, name]:.4f}" for d in self.datasets)]
                for name in mean_rank.index]
        out += [tabulate(rows, headers=["Model", "mean rank", *self.datasets], tablefmt="github",
                         disable_numparse=True), ""]
        self.tables.append(("across datasets: mean rank on the main metric", "", ["Model", "mean rank",
                                                                                *self.datasets], rows))
        out.append(f"Friedman test over {len(self.datasets)} datasets and {len(models)} models: "
                   f"chi-square {statistic:.2f}, p = {p_value:.2g}"
                   + (" (the models differ)." if p_value < ALPHA else " (no difference shown at alpha "
                      f"{ALPHA}; with few datasets the test has little power)."))
        diagram = self.plot_critical_difference(frame, mean_rank)
        if diagram is not None:
            out += ["", f"![Critical-difference diagram]({diagram.relative_to(self.out_dir).as_posix()})",
                    "", "Nemenyi post-hoc test (scikit-posthocs): models joined by a bar do not differ "
                    f"significantly at alpha {ALPHA}."]
        return out + [""]

    def plot_critical_difference(self, frame, mean_rank) -> Path | None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import scikit_posthocs

        pvalues = scikit_posthocs.posthoc_nemenyi_friedman(frame.to_numpy())
        pvalues.index = pvalues.columns = frame.columns
        self.plot_dir.mkdir(parents=True, exist_ok=True)
        path = self.plot_dir / "critical-difference.png"
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.3 * len(frame.columns)))
        scikit_posthocs.critical_difference_diagram(mean_rank, pvalues, ax=ax, alpha=ALPHA)
        ax.set_title(f"Mean rank over {len(frame)} datasets (Nemenyi, alpha {ALPHA})", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path

    def provenance(self) -> list[str]:
        commits = Counter()
        for r in self.finished + self.failed:
            env = r.get("environment") or {}
            commit = env.get("git_commit") or "unknown"
            commits[commit + (" (uncommitted changes)" if env.get("git_dirty") else "")] += 1
        out = ["## Provenance", ""]
        suite_file = str(self.meta.get("file") or "")
        shipped = suite_file.startswith("bench/suites/") or not suite_file  # `bench run NAME` finds it
        if self.meta.get("name") or suite_file:
            out.append(f"- Every run of the suite: `bench run {self.meta.get('name') if shipped else suite_file}` "
                       "(runs what the store lacks, skips what it holds)")
        if self.meta.get("command"):
            out.append(f"- Last `bench run` that added runs here: `{self.meta['command']}`")
        if self.meta.get("file"):
            out.append(f"- Suite file: `{self.meta['file']}`")
        out.append("- Runs made at commit: " + (", ".join(f"`{c}` ({n} runs)" for c, n in sorted(commits.items()))
                                                 or "none"))
        out.append(f"- Report rebuilt from stored results by `bench report --results {self.store.root} "
                   f"--out {self.out_dir} --suite {self.suite}` at commit `{_git('rev-parse', 'HEAD') or 'unknown'}`")
        planned, lacking = not_yet_run(self.meta, self.finished, self.fitted)
        of = f" of the suite's {planned}" if planned else ""
        out.append(f"- Runs: {len(self.finished)} finished{of}, {len(self.failed)} failed")
        if lacking:
            out.append("- Not yet finished (`bench run` resumes them): " + "; ".join(lacking))
        return out + [""]

    def dataset_section(self, dataset: str) -> list[str]:
        protocol = self.protocol(dataset)
        key = published_key(dataset, self.meta)
        out = [f"## {dataset}", "", f"Protocol: **{protocol}**. Published numbers: "
               + (f"`{key}`." if key else "none attached."), ""]
        runs = self.by_dataset[dataset]
        table_protocols = [p for p in PROTOCOL_TITLES
                           if any(p in r.get("metrics", {}).get("test", {}) for rs in runs.values() for r in rs)]
        for table_protocol in table_protocols:
            out += self.accuracy_table(dataset, protocol, table_protocol, key)
        out += self.efficiency_table(dataset)
        out += self.softmax_table(dataset)
        curve = self.plot_curves(dataset)
        if curve is not None:
            out += [f"![Learning curves on {dataset}]({curve.relative_to(self.out_dir).as_posix()})", ""]
        return out

    def accuracy_table(self, dataset: str, protocol: str, table_protocol: str, key: str | None) -> list[str]:
        units = Units(protocol)
        main = MAIN_METRIC[protocol]
        runs = {m: [r for r in rs if table_protocol in r.get("metrics", {}).get("test", {})]
                for m, rs in self.by_dataset[dataset].items()}
        models = model_order([m for m, rs in runs.items() if rs], self.meta)
        stats = {m: {metric: [r["metrics"]["test"][table_protocol].get(metric) for r in runs[m]] for metric in METRICS}
                 for m in models}
        means = {m: {metric: _mean(v) for metric, v in s.items()} for m, s in stats.items()}

        sig, baseline, note = self.significance_for(runs, models, means, table_protocol, main)
        best_shown = {metric: max((units.value(means[m][metric]) for m in models if means[m][metric] is not None),
                                  key=float, default=None) for metric in METRICS}
        published_metrics = self._published_metrics(key, table_protocol)

        headers = ["Model", "n", *map(metric_label, METRICS), "p (Holm)"]
        if published_metrics:
            label = " / ".join(metric_label(m) for m in published_metrics)
            headers += [f"Published {label}", "Δ"]
        rows = []
        for m in models:
            row = [model_label(m) + (" (best baseline)" if m == baseline else ""), len(runs[m])]
            for metric in METRICS:
                row.append(self._cell(stats[m][metric], units, best_shown[metric],
                                      sig.get(m, {}).get("mark", "") if metric == main else ""))
            row.append(f"{sig[m]['p_holm']:.2g}" if m in sig else "")
            if published_metrics:
                row += self._published_cells(key, table_protocol, m, means[m], published_metrics, units)
            rows.append(row)

        from tabulate import tabulate

        title = f"### {dataset}: {PROTOCOL_TITLES[table_protocol]}, test, {units.label}"
        self.tables.append((title[4:], fitting_line(runs, models), headers, rows))
        out = [title, "", fitting_line(runs, models), "",
               tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
        out.append(f"Main metric {metric_label(main)}. " + note)
        for m in models:
            if all(means[m][metric] == 0 for metric in METRICS if means[m][metric] is not None):
                out += ["", f"{model_label(m)} is 0 on every metric. "
                        + ZERO_BY_DESIGN.get(m, "No test target reached its top 20: see its config and curve.")]
        extra = self._published_list(key, table_protocol, units)
        return out + ([""] + extra if extra else []) + [""]

    def significance_for(self, runs, models, means, table_protocol, main):
        """Per-model tests against the best baseline; returns (results, baseline, note)."""
        baselines = [m for m in models if m in BASELINES and means[m][main] is not None]
        if not baselines:
            return {}, None, "No baseline in this table: no significance test."
        baseline = max(baselines, key=lambda m: means[m][main])
        values = {}
        for m in models:
            cases = self._seed_mean_per_case(runs[m], table_protocol, main)
            if cases is not None:
                values[m] = cases
        if baseline not in values:
            return {}, baseline, f"Best baseline `{baseline}` has no stored ranks: no significance test."
        n = len(values[baseline])
        values = {m: v for m, v in values.items() if len(v) == n}
        missing = sorted(set(models) - set(values))
        note = (f"Best baseline: `{baseline}`; {TEST_NAME.format(metric=metric_label(main), alpha=ALPHA)}, "
                f"{n} test cases.")
        if missing:
            note += f" Not tested (no ranks, or other test cases): {', '.join(missing)}."
        return significance(values, baseline), baseline, note

    def _seed_mean_per_case(self, records: list[dict], table_protocol: str, metric: str) -> np.ndarray | None:
        arrays = []
        for r in records:
            ranks = self.store.load_ranks(r).get(f"test_{table_protocol}")
            if ranks is not None:
                arrays.append(per_case(ranks, metric))
        if not arrays or len({len(a) for a in arrays}) != 1:
            return None
        return np.mean(arrays, axis=0)

    @staticmethod
    def _cell(values: list, units: Units, best: str | None, mark: str) -> str:
        vals = [v for v in values if v is not None]
        if not vals:
            return "–"
        mean = units.value(float(np.mean(vals)))
        text = f"**{mean}**" if mean == best else mean
        if len(vals) > 1:
            text += f" ± {units.value(float(np.std(vals, ddof=1)))}"
        return text + (f" {mark}" if mark else "")

    @staticmethod
    def _published_metrics(key: str | None, table_protocol: str) -> list[str]:
        rows = published_rows(key, table_protocol)
        return [m for m in METRICS if any(m in cell for cell in rows.values())]

    @staticmethod
    def _published_cells(key, table_protocol, model, means, metrics, units) -> list[str]:
        found = published_for(key, table_protocol, model)
        if found is None:
            return ["", ""]
        row, cell = found
        values = " / ".join(units.value(cell[m]) if m in cell else "–" for m in metrics)
        diffs = " / ".join(units.diff(means[m] - cell[m]) if m in cell and means.get(m) is not None else "–"
                           for m in metrics)
        label = "published" if cell["verified"] else "published (unverified)"
        return [f"{values} ({row}; {label})", diffs]

    @staticmethod
    def _published_list(key, table_protocol, units) -> list[str]:
        rows = published_rows(key, table_protocol)
        if not rows:
            return []
        out = [f"Published rows for `{key}` ({PROTOCOL_TITLES[table_protocol]}):", ""]
        for name, cell in rows.items():
            values = ", ".join(f"{metric_label(m)} {units.value(cell[m])}" for m in METRICS if m in cell)
            label = "published" if cell["verified"] else "published (unverified)"
            out.append(f"- {name}: {values}: {label}, {cell['source']}")
        return out

    def efficiency_table(self, dataset: str) -> list[str]:
        from tabulate import tabulate

        runs = self.by_dataset[dataset]
        rows = []
        for m in model_order(runs, self.meta):
            rs = runs[m]
            timings = [r.get("timings") or {} for r in rs]
            best = _mean(None if r.get("best_epoch") is None else r["best_epoch"] + 1 for r in rs)
            trained = _mean(r.get("epochs_trained") for r in rs)
            epochs = "–" if not trained else f"{_num(best, 1)} / {_num(trained, 1)}"
            rows.append([model_label(m), len(rs), ran_on(rs), _num(_mean(t.get("seconds_per_epoch") for t in timings), 2),
                         epochs, _num(_mean(t.get("train_seconds") for t in timings), 1),
                         _num(_mean(t.get("eval_cases_per_second") for t in timings), 0),
                         _num(_mean(r.get("num_parameters") for r in rs), 0),
                         _num(_mean(r.get("peak_memory_mb") for r in rs), 0)])
        headers = ["Model", "n", "ran on", "s / epoch", "epochs (best / trained)", "train s (total)",
                   "eval cases / s", "parameters", "peak memory (MB)"]
        self.tables.append((f"{dataset}: efficiency (mean over seeds)", "", headers, rows))
        return [f"### {dataset}: efficiency (mean over seeds)", "",
                tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), "",
                "Best epoch counts from 1. `ran on`: torch's threads (or the GPU) of each run, per seed where the "
                "seeds differ, whose times the row's means then mix. Training time includes the per-epoch "
                "validation; evaluation throughput is test cases ranked per second. Peak memory is the process's "
                "peak resident set size.", ""]

    #: the two metrics a full-against-sampled softmax table shows, per protocol (main metric last)
    SOFTMAX_METRICS = {"session": ("recall@20", "mrr@20"), "leave-one-out": ("recall@10", "ndcg@10")}

    def softmax_pairs(self, dataset: str) -> list[tuple[str, str]]:
        """``(full, sampled)`` model pairs: a model trained with ``loss_type: sampled`` and
        the same model class trained with the full softmax (``loss_type: CE``)."""
        runs = self.by_dataset[dataset]
        models = model_order(runs, self.meta)

        def loss(m):
            return {str(r["config"].get("loss_type", "")).upper() for r in runs[m]}

        def model_class(m):
            return {r["config"].get("model") for r in runs[m]}

        pairs = []
        for sampled in models:
            if loss(sampled) == {"SAMPLED"}:
                full = [m for m in models if loss(m) == {"CE"} and model_class(m) == model_class(sampled)]
                if full:
                    pairs.append((full[0], sampled))
        return pairs

    def softmax_table(self, dataset: str) -> list[str]:
        """Full softmax against sampled softmax in one table: accuracy and cost per epoch
        side by side, the question a large catalogue asks."""
        from tabulate import tabulate

        pairs = self.softmax_pairs(dataset)
        if not pairs:
            return []
        protocol = self.protocol(dataset)
        units, metrics = Units(protocol), self.SOFTMAX_METRICS[protocol]
        main = metrics[-1]
        runs = self.by_dataset[dataset]

        test = {m: {metric: _mean(r["metrics"]["test"].get("full", {}).get(metric) for r in runs[m])
                    for metric in metrics} for pair in pairs for m in pair}
        per_epoch = {m: _mean((r.get("timings") or {}).get("seconds_per_epoch") for r in runs[m])
                     for pair in pairs for m in pair}

        def ratio(a, b, suffix=""):
            return f"{a / b:.2f}{suffix}" if a is not None and b else "–"

        where = {m: ran_on(runs[m]) for pair in pairs for m in pair}
        rows = []
        for full, sampled in pairs:
            # like for like only if every run of both rows trained on the same device and threads
            alike = where[full] == where[sampled] and " / " not in where[full]
            for m in (full, sampled):
                config = runs[m][0]["config"]
                loss = ("full softmax" if m == full else
                        f"{config.get('n_negatives')} negatives ∝ count^{config.get('sample_alpha')}, logQ")
                speed_up = ratio(per_epoch[full], per_epoch[m], "x") + ("" if alike or m == full else " (unlike runs)")
                row = [model_label(m), loss, len(runs[m]), where[m], _num(per_epoch[m], 2)]
                row += [units.value(v) if (v := test[m][metric]) is not None else "–" for metric in metrics]
                row += [ratio(test[m][main], test[full][main]), speed_up]
                rows.append(row)
        headers = ["Model", "loss", "n", "ran on", "s / epoch", *map(metric_label, metrics),
                   f"{metric_label(main)} / full's", "speed-up per epoch"]
        title = f"{dataset}: full softmax against sampled softmax (full ranking, test, {units.label})"
        note = (f"Each sampled-softmax row next to the same model trained with the full softmax over all items; "
                f"`{metric_label(main)} / full's` is its mean test {metric_label(main)} over the full-softmax "
                f"row's; the speed-up is the full row's training seconds per epoch over its own (means over seeds; "
                f"comparable where both ran on the same machine under the same load, see Environment; `(unlike runs)`: "
                f"the two rows' runs trained on different threads or devices, so the ratio is not like for like). "
                f"That is a cost per epoch, not a time to a validation score: read it with the accuracy ratio "
                f"beside it.")
        self.tables.append((title, note, headers, rows))
        return [f"### {title}", "", tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), "",
                note, ""]

    def plot_curves(self, dataset: str) -> Path | None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        runs = self.by_dataset[dataset]
        series = {}
        metric = None
        for m in model_order(runs, self.meta):
            per_epoch_metric, per_epoch_loss = defaultdict(list), defaultdict(list)
            for r in runs[m]:
                metric = metric or r.get("valid_metric", "mrr@20")
                for point in r.get("curve") or []:
                    epoch = int(point["epoch"]) + 1
                    value = (point.get("valid") or {}).get(r.get("valid_metric", "mrr@20"))
                    if value is not None:
                        per_epoch_metric[epoch].append(value)
                    if point.get("train_loss") is not None:
                        per_epoch_loss[epoch].append(point["train_loss"])
            if per_epoch_metric:
                series[m] = (per_epoch_metric, per_epoch_loss)
        if not series:
            return None
        fig, (ax_valid, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
        for m, (valid, loss) in series.items():
            xs = sorted(valid)
            ax_valid.plot(xs, [np.mean(valid[x]) for x in xs], marker="o", markersize=3, label=m)
            xs = sorted(loss)
            ax_loss.plot(xs, [np.mean(loss[x]) for x in xs], marker="o", markersize=3, label=m)
        ax_valid.set(title=f"{dataset}: validation {metric_label(metric)} (mean over seeds)", xlabel="epoch",
                     ylabel=metric_label(metric))
        ax_loss.set(title="training loss, epoch total (mean over seeds)", xlabel="epoch", ylabel="loss")
        ax_valid.legend(fontsize=8)
        for ax in (ax_valid, ax_loss):
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.tight_layout()
        self.plot_dir.mkdir(parents=True, exist_ok=True)
        path = self.plot_dir / f"{_slug(dataset)}-curves.png"
        fig.savefig(path, dpi=110, metadata={"Software": None})
        plt.close(fig)
        return path

    def failures(self) -> list[str]:
        if not self.failed:
            return []
        from tabulate import tabulate

        rows = [[r["dataset"], r["model"], r["seed"], _first_line(r.get("error")),
                 f"`{(r.get('config_hash') or '?')[:12]}`", r.get("finished_at") or ""] for r in self.failed]
        return ["## Failed runs", "", tabulate(rows, headers=["Dataset", "Model", "Seed", "Error", "Config", "At"],
                                               tablefmt="github", disable_numparse=True),
                "", "Their tracebacks are in each run's `record.json`.", ""]

    def reference_section(self) -> list[str]:
        models = sorted({r["model"] for r in self.finished + self.failed if is_reference(r["model"])})
        if not models:
            return []
        out = ["## RecBole reference rows", "",
               "Rows marked *(RecBole)* are RecBole 1.2.1's own implementations, trained through the "
               "same data, trainer and evaluator as ours.", ""]
        for m in models:
            note = self.notes.get(m) or self.notes.get(m.split(":", 1)[1])
            out.append(f"- `{m}`: {note}" if note else f"- `{m}`")
        return out + [""]

    def data_section(self) -> list[str]:
        from tabulate import tabulate

        rows = []
        for dataset in self.datasets:
            records = [r for rs in self.by_dataset[dataset].values() for r in rs]
            digests = Counter(r.get("dataset_manifest_sha256") or "unknown" for r in records)
            cases = sorted({r.get("num_test_cases") for r in records if r.get("num_test_cases") is not None})
            fmt = ((_dataset_meta(self.meta).get(dataset) or {}).get("convert") or {}).get("format")
            for digest, n in sorted(digests.items()):
                rows.append([dataset, self.protocol(dataset), TIME_ORDER.get(fmt, "as converted"),
                             published_key(dataset, self.meta) or "–", f"`{digest}`", ", ".join(map(str, cases)), n])
        out = ["## Datasets", "", tabulate(rows, headers=["Dataset", "Protocol", "Time (recency for kNN, splits)",
                                                          "Published key", "manifest.json sha256", "test cases",
                                                          "runs"],
                                           tablefmt="github", disable_numparse=True), ""]
        if any(sum(1 for row in rows if row[0] == d) > 1 for d in self.datasets):
            out += ["**Warning:** runs of one dataset used different converted data (several manifests).", ""]
        return out

    def environment_section(self) -> list[str]:
        from tabulate import tabulate

        values: dict[str, Counter] = defaultdict(Counter)
        for r in self.finished + self.failed:
            env = r.get("environment") or {}
            for k, v in env.items():
                if k == "packages":
                    for name, version in (v or {}).items():
                        values[name][str(version)] += 1
                else:
                    values[k][str(v)] += 1
        if not values:
            return []
        rows = [[k, "; ".join(v if len(c) == 1 else f"{v} ({n} runs)" for v, n in sorted(c.items()))]
                for k, c in values.items()]
        return ["## Environment", "", tabulate(rows, headers=["", "value (over all runs)"], tablefmt="github",
                                               disable_numparse=True), ""]

    def config_section(self) -> list[str]:
        import yaml

        out = ["## Configs", "",
               "The resolved RecBole config of every run, without the run-local keys that the config hash ignores "
               f"({', '.join(sorted(RUN_LOCAL_KEYS))}). One block per dataset, model and config hash.", ""]
        for dataset in self.datasets:
            runs = self.by_dataset[dataset]
            for m in model_order(runs, self.meta):
                by_hash = defaultdict(list)
                for r in runs[m]:
                    by_hash[r.get("config_hash")].append(r)
                for digest, rs in by_hash.items():
                    config = {k: v for k, v in (rs[0].get("config") or {}).items() if k not in RUN_LOCAL_KEYS}
                    seeds = ", ".join(str(r["seed"]) for r in rs)
                    out += [f"<details><summary>{dataset} / {m}: config <code>{(digest or '?')[:12]}</code> "
                            f"(seeds {seeds})</summary>", "", f"config hash `{digest}`", "", "```yaml",
                            yaml.safe_dump(config, sort_keys=True, default_flow_style=None).rstrip(), "```", "",
                            "</details>", ""]
        return out


def write_report(suite: str, store: ResultStore, out_dir: Path, suite_meta: dict | None = None,
                 latex: bool = False) -> Path:
    """Write ``<out_dir>/<suite>.md`` (and its plots) from the stored records of ``suite``.

    ``suite_meta`` is what the suite runner knows, all optional: ``command`` (the command
    line), ``file`` (the suite YAML), ``description``, ``models`` (row order) and
    ``datasets`` (a list of names or ``{"name", "published_key"}`` mappings, or a
    mapping of name to ``{"published_key": ...}``). It is saved in the store, so a later
    ``bench report`` rebuilds the same report without it.
    """
    out_dir = Path(out_dir)
    if suite_meta is not None:
        store.write_suite_meta(suite, suite_meta)
    else:
        suite_meta = store.read_suite_meta(suite)
    report = SuiteReport(suite, store, out_dir, suite_meta)
    if not report.finished and not report.failed:
        raise InputError(f"no results for suite {suite!r} under {store.root}; run `bench run` first")
    out_dir.mkdir(parents=True, exist_ok=True)
    text = report.build()
    path = out_dir / f"{_slug(suite)}.md"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    if latex:
        write_latex(report, path.with_suffix(".tex"))
    return path


# -- LaTeX ---------------------------------------------------------------------------------

LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                 "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def latex_cell(cell) -> str:
    """A markdown cell as LaTeX: special characters escaped, ``**x**`` bold, ± † ‡ Δ in math."""
    text = "".join(LATEX_SPECIAL.get(c, c) for c in str(cell))
    text = re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", text)
    for char, math in (("±", r"$\pm$"), ("†", r"$^\dagger$"), ("‡", r"$^\ddagger$"), ("Δ", r"$\Delta$"),
                       ("–", "--"), ("−", "-")):
        text = text.replace(char, math)
    return text


def latex_table(title: str, note: str, headers: list[str], rows: list[list]) -> str:
    """One booktabs table (``\\usepackage{booktabs}``) with its title as caption."""
    spec = "l" + "r" * (len(headers) - 1)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{latex_cell(title)}}}",
             f"\\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(map(latex_cell, headers)) + r" \\", r"\midrule"]
    lines += [" & ".join(map(latex_cell, row)) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if note:
        lines += [f"\\par\\smallskip\\footnotesize {latex_cell(note)}"]
    return "\n".join(lines + [r"\end{table}", ""])


def write_latex(report: SuiteReport, path: Path) -> Path:
    """The report's tables (as built for the markdown) as LaTeX, for the paper itself."""
    text = f"% Suite {report.suite}: the tables of {path.with_suffix('.md').name}, written by\n"
    text += (f"% bench report --results {report.store.root} --out {report.out_dir} --suite {report.suite} "
             f"--format latex (at commit {_git('rev-parse', 'HEAD') or 'unknown'})\n")
    if report.meta.get("command"):
        text += f"% last bench run that added runs: {_first_line(report.meta['command'])}\n"
    text += "\n"
    text += "\n".join(latex_table(*table) for table in report.tables)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


# -- CLI -------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default="results", help="results store to read (default: results)")
    parser.add_argument("--out", default="reports", help="folder for the reports (default: reports)")
    parser.add_argument("--suite", help="rebuild only this suite's report (default: every suite)")
    parser.add_argument("--format", choices=("markdown", "latex"), default="markdown",
                        help="latex: also write <suite>.tex, the same tables as LaTeX (booktabs)")


def main(args: argparse.Namespace) -> int:
    store = ResultStore(args.results)
    suites = [args.suite] if args.suite else store.suites()
    if not suites:
        raise InputError(f"no results under {args.results}; run `bench run` first")
    for suite in suites:
        path = write_report(suite, store, Path(args.out), latex=getattr(args, "format", "markdown") == "latex")
        print(path, file=sys.stdout)
        if getattr(args, "format", "markdown") == "latex":
            print(path.with_suffix(".tex"), file=sys.stdout)
    return 0
