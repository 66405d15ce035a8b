"""The tuning report: every trial of a study as a table, the best one, and two plots.

``reports/tune-<dataset>-<model>.md`` with ``…-history.png`` (optimisation history)
and ``…-importances.png`` (parameter importances, fANOVA) beside it. The report is
rebuilt from the study alone, so it always shows the whole study, resumed or not.
"""
from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState
from tabulate import tabulate


def report_stem(dataset: str, model: str) -> str:
    return f"tune-{dataset}-{model.replace(':', '-')}"


def command_line(s) -> str:
    """The command that (re)produces this study, from the settings that differ from the defaults."""
    parts = [f"bench tune {s.model} {s.dataset} --trials {s.trials} --parallel {s.parallel}"]
    for flag, value, default in (("--storage", s.storage, None), ("--study-name", s.study_name, None),
                                 ("--metric", s.metric, "mrr@20"), ("--epochs", s.epochs, None),
                                 ("--seed", s.seed, 0), ("--space", s.space, None), ("--pruner", s.pruner, "median"),
                                 ("--timeout", s.timeout, None), ("--data-root", str(s.data_root), "dataset_atomic")):
        if value != default:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _seconds(trial) -> str:
    if trial.datetime_start and trial.datetime_complete:
        return f"{(trial.datetime_complete - trial.datetime_start).total_seconds():.1f}"
    return ""


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def trial_table(study: optuna.Study, space, metric: str) -> str:
    names = [p.name for p in space.params]
    names += sorted({n for t in study.trials for n in t.params} - set(names))  # from an earlier space
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            continue
        epochs = t.user_attrs.get("epochs_trained") or (len(t.intermediate_values) or "")
        note = t.user_attrs.get("error", "") if t.state == TrialState.FAIL else ""
        if t.system_attrs.get("retry_history"):
            note = (note + " " if note else "") + f"rerun of trial {t.system_attrs['retry_history'][-1]}"
        rows.append([t.number, t.state.name.lower(), _fmt(t.value), epochs, _seconds(t),
                     *[_fmt(t.params.get(n)) for n in names], note[:80]])
    headers = ["trial", "state", f"valid {metric}", "epochs", "seconds", *names, "note"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def write_plots(study: optuna.Study, out_dir: Path, stem: str) -> dict[str, str]:
    """PNG plots beside the report; a plot that cannot be drawn gets the reason instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out: dict[str, str] = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots = {"history": (ovm.plot_optimization_history, 1, "no trial has completed yet"),
             "importances": (ovm.plot_param_importances, 2,
                             "parameter importances need at least 2 completed trials")}
    for name, (plot, needed, reason) in plots.items():
        if len(complete) < needed:
            out[name] = f"not drawn: {reason}."
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = plot(study)
            figure = ax.figure if hasattr(ax, "figure") else ax[0].figure
            figure.set_size_inches(8, 4.5)
            figure.tight_layout()
            path = out_dir / f"{stem}-{name}.png"
            figure.savefig(path, dpi=100)
            plt.close(figure)
            out[name] = f"![{name}]({path.name})"
        except (ValueError, RuntimeError, ZeroDivisionError) as err:  # e.g. no parameter varied
            plt.close("all")
            out[name] = f"not drawn: {str(err).splitlines()[0] if str(err) else type(err).__name__}."
    return out


def write_report(study: optuna.Study, space, settings, result, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = report_stem(settings.dataset, settings.model)
    trials = study.get_trials(deepcopy=False)
    count = {state: sum(t.state == state for t in trials) for state in TrialState}
    plots = write_plots(study, out_dir, stem)
    lines = [
        f"# Tuning {settings.model} on {settings.dataset}",
        "",
        f"Command: `{command_line(settings)}` (commit {_commit()}).",
        "",
        f"- Study `{study.study_name}` in `{result.storage}`; objective: validation {settings.metric}, maximised. "
        "Test cases are never ranked during tuning.",
        f"- Search space: `{space.path.name}` ({len(space.params)} parameters); sampler TPE "
        f"(seed {settings.seed}), pruner {settings.pruner}.",
        f"- Trials: {count[TrialState.COMPLETE] + count[TrialState.PRUNED]} finished "
        f"({count[TrialState.COMPLETE]} complete, {count[TrialState.PRUNED]} pruned), "
        f"{count[TrialState.FAIL]} failed, {count[TrialState.RUNNING]} running when this was written.",
        "",
        "## Best trial",
        "",
    ]
    if result.best_number is None:
        lines += ["No trial has completed yet.", ""]
    else:
        lines += [f"Trial {result.best_number}: valid {settings.metric} = {result.best_value:.4f}. "
                  f"Its parameters, written to `{_relative(result.best_path)}` for `bench run`:", "",
                  "```yaml", yaml.safe_dump(result.best_params, sort_keys=False).strip(), "```", ""]
    lines += ["## Optimisation history", "", plots["history"], "",
              "## Parameter importances", "", plots["importances"], "",
              "## Trials", "", "Seconds: from the driver's ask to the worker's tell.", "",
              trial_table(study, space, settings.metric), ""]
    path = out_dir / f"{stem}.md"
    path.write_text("\n".join(lines))
    return path


def _relative(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
