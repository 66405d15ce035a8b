"""`bench run [SUITE]`: a suite file -> checks -> one Ray task per run -> results -> report.

A suite is a YAML file (shipped ones in ``bench/suites/``; ``bench run`` alone runs
``default``)::

    name: default                 # results/<name>/ and reports/<name>.md (default: the file's stem)
    description: ...              # shown at the top of the report
    datasets:
      - name: ml100k              # a folder under --data-root (dataset_atomic/)
        convert:                  # optional: how to make it when it is not converted yet
          format: movielens       # a `bench convert` FORMAT
          src: recbole:ml-100k    # a path (relative: to the current folder), or recbole:ml-100k,
                                  # the copy inside the recbole package
          options: {max_len: 50}  # max_len, fraction, seed: as `bench convert`
        published_key: diginetica # optional: the published numbers the report shows
    models: [narm, sasrec, recbole:NARM]
    seeds: [0, 1, 2]
    overrides:                    # RecBole's own config keys
      all: {epochs: 20}
      dataset: {ml100k: {train_batch_size: 256}}
      model: {narm: {learning_rate: 0.003}}
      dataset_model: {ml100k: {narm: {hidden_size: 64}}}

A run's config, lowest precedence first: RecBole's defaults, ``bench/harness.yaml``,
the dataset's YAML, the model's YAML, the tuned parameters of (dataset, model)
(``hyper/best/``, recorded in the config as ``tuned_params``), then the suite's
``overrides``: ``all``, ``dataset``, ``model``, ``dataset_model``. The protocol of a
dataset is the one its converter wrote in its manifest.

Everything is checked before anything trains: the file's structure, every model
name, every dataset (converted, or with a ``convert:`` section), every override key
(:mod:`bench.config_keys`) and RecBole's own checks of each (dataset, model) config.
An error names the suite file and the line.

A rerun skips every run whose stored record finished with the same config hash on
the same converted data, and runs the rest: missing, failed (unless
``--no-rerun-failed``) and changed ones.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

import bench.compat  # noqa: F401
from bench.config_keys import SET_PER_RUN, common_keys, did_you_mean, model_keys
from bench.errors import InputError
from bench.execution import PlannedRun, execute
from bench.registry import ModelSpec, resolve_model
from bench.store import ResultStore, RunKey, config_hash, dataset_manifest

SUITES_DIR = Path(__file__).with_name("suites")
DEFAULT_SUITE = "default"
DEFAULT_DATA_ROOT = "dataset_atomic"

TOP_KEYS = ("name", "description", "datasets", "models", "seeds", "overrides")
DATASET_KEYS = ("name", "convert", "published_key")
CONVERT_KEYS = ("format", "src", "options")
CONVERT_OPTIONS = ("max_len", "fraction", "seed")
SECTIONS = ("all", "dataset", "model", "dataset_model")
EMBEDDED_SOURCES = {"recbole:ml-100k": "the MovieLens-100k copy inside the recbole package"}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


# -- YAML that remembers lines -----------------------------------------------------------------

class SuiteFile:
    """A parsed YAML document that knows the line of every key and list item."""

    def __init__(self, path: Path):
        self.path = path
        self.lines: dict[tuple, int] = {}
        try:
            text = path.read_text()
        except OSError as err:
            raise InputError(f"cannot read the suite: {err.strerror or err}", path) from None
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            self.data = None if node is None else self._build(loader, node, ())
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            raise InputError(f"not valid YAML: {err.problem or err.context}", path,
                             mark.line + 1 if mark else None) from None
        finally:
            loader.dispose()

    def _build(self, loader, node, where: tuple):
        self.lines.setdefault(where, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)  # YAML merge keys (<<)
            out = {}
            for key_node, value_node in node.value:
                key = loader.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if not isinstance(key, (str, int, float, bool)):
                    raise InputError("a key must be a plain name", self.path, line)
                if key in out:
                    raise InputError(f"duplicate key {key!r}", self.path, line)
                self.lines[where + (key,)] = line
                out[key] = self._build(loader, value_node, where + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._build(loader, item, where + (i,)) for i, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    def line(self, *where) -> int | None:
        while where and where not in self.lines:
            where = where[:-1]
        return self.lines.get(where)

    def error(self, message: str, *where) -> InputError:
        return InputError(message, self.path, self.line(*where))


# -- the suite ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetEntry:
    name: str
    convert: dict | None = None  # {"format", "src", "options"}
    published_key: str | None = None


@dataclass
class Suite:
    name: str
    path: Path
    description: str
    datasets: list[DatasetEntry]
    models: list[str]
    seeds: list[int]
    overrides: dict  # {"all": {...}, "dataset": {d: {...}}, "model": {m: {...}}, "dataset_model": {d: {m: {...}}}}
    specs: dict[str, ModelSpec] = field(repr=False, default_factory=dict)
    file: SuiteFile | None = field(repr=False, default=None)

    def settings(self, dataset: str, model: str) -> dict:
        """The suite's overrides for one (dataset, model), later sections winning."""
        o = self.overrides
        return {**o["all"], **o["dataset"].get(dataset, {}), **o["model"].get(model, {}),
                **o["dataset_model"].get(dataset, {}).get(model, {})}

    def meta(self, command: str | None = None) -> dict:
        """What the report needs to know about the suite (kept in the results store)."""
        return {
            "name": self.name, "file": _shown(self.path), "command": command, "description": self.description,
            "models": list(self.models), "seeds": list(self.seeds), "overrides": self.overrides,
            "datasets": {d.name: {k: v for k, v in (("published_key", d.published_key), ("convert", d.convert))
                                  if v is not None} for d in self.datasets},
        }


def _shown(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it (a report made in
    one checkout then names the suite file the same way in any other), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def find_suite(name_or_path: str | None) -> Path:
    """A suite file: a path, or the name of a shipped suite (``default`` if none is given)."""
    arg = name_or_path or DEFAULT_SUITE
    path = Path(arg)
    if path.is_file():
        return path
    shipped = SUITES_DIR / f"{arg}.yaml"
    if path.suffix not in (".yaml", ".yml") and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml")))
    raise InputError(f"no suite file {arg!r}, and no shipped suite of that name (shipped: {names})")


def _kind(value, kind, what: str, doc: SuiteFile, *where):
    names = {dict: "a mapping", list: "a list", str: "a string", int: "an integer"}
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise doc.error(f"{what} must be {names.get(kind, kind.__name__)}, got {value!r}", *where)
    return value


def _unknown(keys, allowed, what: str, doc: SuiteFile, *where) -> None:
    for key in keys:
        if key not in allowed:
            raise doc.error(f"unknown {what} {key!r}{did_you_mean(str(key), set(allowed))} "
                            f"(allowed: {', '.join(allowed)})", *where, key)


def load_suite(path: str | Path, data_root: str | Path = DEFAULT_DATA_ROOT) -> Suite:
    """Read and check a suite file; nothing is converted or trained. Raises InputError."""
    path = Path(path)
    doc = SuiteFile(path)
    data = doc.data
    if not isinstance(data, dict):
        raise InputError("a suite is a mapping with the keys " + ", ".join(TOP_KEYS), path, doc.line())
    _unknown(data, TOP_KEYS, "suite key", doc)
    for required in ("datasets", "models"):
        if required not in data:
            raise doc.error(f"the suite lists no {required} (a `{required}:` list is required)")

    name = data.get("name", path.stem)
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise doc.error(f"suite name {name!r} must be letters, digits, '.', '_' or '-' (it names folders)", "name")
    description = data.get("description") or ""

    models = _check_models(data["models"], doc)
    datasets = _check_datasets(data["datasets"], doc, Path(data_root))
    seeds = data.get("seeds", [0])
    _kind(seeds, list, "seeds", doc, "seeds")
    if not seeds:
        raise doc.error("seeds is empty", "seeds")
    for i, seed in enumerate(seeds):
        _kind(seed, int, "a seed", doc, "seeds", i)
        if seed in seeds[:i]:
            raise doc.error(f"seed {seed} is listed twice", "seeds", i)

    suite = Suite(name, path, str(description), datasets, list(models), list(seeds),
                  overrides={}, specs=models, file=doc)
    suite.overrides = _check_overrides(data.get("overrides") or {}, suite, doc)
    return suite


def _check_models(models, doc: SuiteFile) -> dict[str, ModelSpec]:
    _kind(models, list, "models", doc, "models")
    if not models:
        raise doc.error("models is empty", "models")
    specs: dict[str, ModelSpec] = {}
    for i, name in enumerate(models):
        _kind(name, str, "a model", doc, "models", i)
        if name in specs:
            raise doc.error(f"model {name!r} is listed twice", "models", i)
        try:
            specs[name] = resolve_model(name)
        except InputError as err:
            from bench.registry import known_models

            raise doc.error(err.message + did_you_mean(name, set(known_models())), "models", i) from None
        except ImportError as err:  # registered, but its module is missing or broken
            raise doc.error(f"model {name!r} cannot be imported: {err}", "models", i) from None
    return specs


def _check_datasets(entries, doc: SuiteFile, data_root: Path) -> list[DatasetEntry]:
    from bench import convert as converters

    _kind(entries, list, "datasets", doc, "datasets")
    if not entries:
        raise doc.error("datasets is empty", "datasets")
    out: list[DatasetEntry] = []
    for i, entry in enumerate(entries):
        where = ("datasets", i)
        if isinstance(entry, str):
            entry = {"name": entry}
        _kind(entry, dict, "a dataset (a name, or a mapping with name, convert, published_key)", doc, *where)
        _unknown(entry, DATASET_KEYS, "dataset key", doc, *where)
        if "name" not in entry:
            raise doc.error("a dataset needs a `name:`", *where)
        name = _kind(entry["name"], str, "a dataset name", doc, *where, "name")
        if not NAME_PATTERN.fullmatch(name):
            raise doc.error(f"invalid dataset name {name!r}", *where, "name")
        if name in getattr(converters, "RECBOLE_RESERVED_NAMES", ()):
            raise doc.error(f"dataset name {name!r} is reserved: RecBole 1.2.1 loads its own copy of it "
                            "whatever data_path says; convert it under another name (e.g. 'ml100k')", *where, "name")
        if any(d.name == name for d in out):
            raise doc.error(f"dataset {name!r} is listed twice", *where)
        convert = entry.get("convert")
        if convert is not None:
            convert = _check_convert(convert, doc, *where, "convert")
        published = entry.get("published_key")
        if published is not None:
            _check_published_key(published, doc, *where, "published_key")
        converted = (data_root / name / "manifest.json").is_file()
        if not converted and convert is None:
            raise doc.error(f"dataset {name!r} is not converted under {data_root}/ and has no `convert:` "
                            f"section; make it with `{convert_command(name, data_root)}` "
                            "or add a `convert:` section", *where)
        if not converted and not _source_path(convert["src"]).exists():
            raise doc.error(f"convert source {convert['src']!r} of dataset {name!r} does not exist "
                            f"(relative paths are read from the current folder, {Path.cwd()})",
                            *where, "convert", "src")
        out.append(DatasetEntry(name, convert, published))
    return out


def _check_convert(convert, doc: SuiteFile, *where) -> dict:
    from bench.convert import FORMATS

    _kind(convert, dict, "convert", doc, *where)
    _unknown(convert, CONVERT_KEYS, "convert key", doc, *where)
    for required in ("format", "src"):
        if required not in convert:
            raise doc.error(f"convert needs `{required}:`", *where)
    fmt = _kind(convert["format"], str, "convert format", doc, *where, "format")
    if fmt not in FORMATS:
        raise doc.error(f"unknown convert format {fmt!r}{did_you_mean(fmt, set(FORMATS))} "
                        f"(formats: {', '.join(sorted(FORMATS))})", *where, "format")
    _kind(convert["src"], str, "convert src", doc, *where, "src")
    options = convert.get("options") or {}
    _kind(options, dict, "convert options", doc, *where, "options")
    _unknown(options, CONVERT_OPTIONS, "convert option", doc, *where, "options")
    return {"format": fmt, "src": convert["src"], "options": dict(options)}


def _check_published_key(key, doc: SuiteFile, *where) -> None:
    _kind(key, str, "published_key", doc, *where)
    try:
        from bench.published import PUBLISHED
    except ImportError:  # reports are optional for running
        return
    if key not in PUBLISHED:
        raise doc.error(f"unknown published_key {key!r}{did_you_mean(key, set(PUBLISHED))} "
                        f"(known: {', '.join(sorted(PUBLISHED))})", *where)


def _source_path(src: str) -> Path:
    if src in EMBEDDED_SOURCES:
        from bench.convert import recbole_ml100k_path

        return recbole_ml100k_path()
    return Path(src).expanduser()


def shipped_dataset_entry(name: str) -> dict | None:
    """A shipped suite's dataset entry for ``name`` (how to convert it, its published key), if any."""
    for path in sorted(SUITES_DIR.glob("*.yaml")):
        try:
            entries = (yaml.safe_load(path.read_text()) or {}).get("datasets") or []
        except yaml.YAMLError:
            continue
        for entry in entries:
            if isinstance(entry, dict) and entry.get("name") == name and isinstance(entry.get("convert"), dict):
                return entry
    return None


def adhoc_suite(models: list[str], datasets: list[str], seeds: list[int], settings: dict,
                folder: Path, name: str | None = None) -> Path:
    """Write the suite file of a one-off comparison (``bench run --models ... --datasets ...``)
    to ``folder/<name>.yaml`` and return it; it is then loaded and checked like any suite.

    A dataset a shipped suite knows how to convert (``ml100k``, ``diginetica``, ``beauty``)
    is converted on the fly, with its published numbers attached.
    """
    name = name or "adhoc-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(models) + "-on-" + "_".join(datasets))
    entries = [shipped_dataset_entry(d) or d for d in datasets]
    doc = {"name": name, "description": f"One-off comparison: {', '.join(models)} on {', '.join(datasets)}.",
           "datasets": entries, "models": models, "seeds": seeds, "overrides": {"all": settings} if settings else {}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text("# Written by bench run --models/--datasets; rerun it with `bench run " + str(path) + "`\n"
                    + yaml.safe_dump(doc, sort_keys=False))
    return path


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set {text!r}: expected key=value (e.g. --set epochs=5)")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise InputError(f"--set {text!r}: the value is not valid YAML") from None


def ensure_converted(name: str, data_root: str | Path = DEFAULT_DATA_ROOT) -> None:
    """Convert ``name`` into ``data_root`` from its shipped suite entry, unless it is converted."""
    if (Path(data_root) / name / "manifest.json").is_file():
        return
    from bench.convert import convert

    entry = shipped_dataset_entry(name)
    if entry is None:
        raise InputError(f"dataset {name!r} is not converted and no shipped suite knows how to make it; "
                         f"{convert_command(name, data_root)}")
    c = entry["convert"]
    convert(c["format"], _source_path(str(c["src"])), name, data_root, **(c.get("options") or {}))


def convert_command(name: str, data_root: str | Path = DEFAULT_DATA_ROOT) -> str:
    """The `bench convert` command that makes ``name``: from a shipped suite if one knows it."""
    out = "" if str(data_root) == DEFAULT_DATA_ROOT else f" --out {shlex.quote(str(data_root))}"
    entry = shipped_dataset_entry(name)
    if entry is None:
        return f"bench convert FORMAT SRC --name {name}{out}"
    c = entry["convert"]
    options = "".join(f" --{k.replace('_', '-')} {v}" for k, v in (c.get("options") or {}).items())
    src = shlex.quote(str(_source_path(str(c["src"]))))
    return f"bench convert {c['format']} {src} --name {name}{options}{out}"


def _check_overrides(overrides, suite: Suite, doc: SuiteFile) -> dict:
    where = ("overrides",)
    _kind(overrides, dict, "overrides", doc, *where)
    _unknown(overrides, SECTIONS, "overrides section", doc, *where)
    datasets = [d.name for d in suite.datasets]
    out = {"all": {}, "dataset": {}, "model": {}, "dataset_model": {}}

    def settings(value, models: list[str], *at) -> dict:
        _kind(value, dict, "overrides of " + "/".join(map(str, at[1:])), doc, *at)
        for key in value:
            _check_key(key, models, suite, doc, *at, key)
        return dict(value)

    def member(name, names: list[str], what: str, *at) -> None:
        if name not in names:
            raise doc.error(f"overrides for {what} {name!r}, which the suite does not run"
                            f"{did_you_mean(str(name), set(names))}", *at)

    out["all"] = settings(overrides.get("all") or {}, suite.models, *where, "all")
    for section in ("dataset", "model"):
        value = overrides.get(section) or {}
        _kind(value, dict, f"overrides.{section}", doc, *where, section)
        for name, sub in value.items():
            at = (*where, section, name)
            if section == "dataset":
                member(name, datasets, "dataset", *at)
                out[section][name] = settings(sub or {}, suite.models, *at)
            else:
                member(name, suite.models, "model", *at)
                out[section][name] = settings(sub or {}, [name], *at)
    pairs = overrides.get("dataset_model") or {}
    _kind(pairs, dict, "overrides.dataset_model", doc, *where, "dataset_model")
    for dataset, per_model in pairs.items():
        member(dataset, datasets, "dataset", *where, "dataset_model", dataset)
        _kind(per_model or {}, dict, f"overrides.dataset_model.{dataset}", doc, *where, "dataset_model", dataset)
        for model, sub in (per_model or {}).items():
            at = (*where, "dataset_model", dataset, model)
            member(model, suite.models, "model", *at)
            out["dataset_model"].setdefault(dataset, {})[model] = settings(sub or {}, [model], *at)
    return out


def _check_key(key, models: list[str], suite: Suite, doc: SuiteFile, *where) -> None:
    if not isinstance(key, str):
        raise doc.error(f"config key {key!r} must be a name", *where)
    if key in SET_PER_RUN:
        raise doc.error(f"{key!r} cannot be set in a suite: {SET_PER_RUN[key]}", *where)
    common = common_keys()
    if key in common:
        return
    known = [m for m in models if key in model_keys(suite.specs[m])]
    if known:
        return
    candidates = set(common).union(*(model_keys(suite.specs[m]) for m in models))
    whose = f"model {models[0]!r}" if len(models) == 1 else "any model of the suite"
    raise doc.error(f"unknown config key {key!r} (neither RecBole nor {whose} declares it)"
                    f"{did_you_mean(key, candidates)}", *where)


# -- datasets, plan ----------------------------------------------------------------------------

def prepare_datasets(suite: Suite, data_root: str | Path, stream=sys.stderr) -> None:
    """Convert every dataset of the suite that is not converted yet (from its `convert:`)."""
    from bench.convert import convert

    for entry in suite.datasets:
        if (Path(data_root) / entry.name / "manifest.json").is_file():
            continue
        c = entry.convert
        src = _source_path(c["src"])
        print(f"converting {entry.name} ({c['format']} from {src}) into {data_root}/", file=stream, flush=True)
        try:
            convert(c["format"], src, entry.name, data_root, **c["options"])
        except InputError as err:
            line = suite.file.line("datasets", suite.datasets.index(entry), "convert") if suite.file else None
            raise InputError(f"converting dataset {entry.name!r} failed: {err}", suite.path, line) from None


def _resolved_config(spec: ModelSpec, dataset: str, settings: dict, data_root: Path) -> dict:
    """The resolved config a worker will build (minus its run-local keys), built here."""
    from bench.data import make_config
    from bench.runner import resolved_config

    saved = os.environ.get("CUDA_VISIBLE_DEVICES")  # RecBole's Config sets it; the driver's must stay
    try:
        return resolved_config(make_config(spec, dataset, settings, data_root))
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


def plan(suite: Suite, data_root: str | Path, store: ResultStore, use_tuned: bool = True,
         fit_only: bool = False) -> list[PlannedRun]:
    """Every run of the suite with its config, hash and what the store already holds.

    ``fit_only``: a trained model with ``refit: true`` is planned as its early-stopped
    fit alone (``refit: false``, stored with ``stage: fit``), unless the store already
    holds its whole run. A later plan without it reuses that fit and runs only the
    refit (:func:`stored_validation`): a run too long for one job runs as two.
    """
    from bench.tuned import load_best_params

    data_root = Path(data_root).resolve()
    runs: list[PlannedRun] = []
    for entry in suite.datasets:
        manifest, manifest_sha = dataset_manifest(entry.name, data_root)
        for m_index, model in enumerate(suite.models):
            spec = suite.specs[model]
            tuned = load_best_params(entry.name, model) if use_tuned else {}
            settings = {**tuned, **({"tuned_params": tuned} if tuned else {}), **suite.settings(entry.name, model)}
            try:
                config = _resolved_config(spec, entry.name, settings, data_root)
            except InputError:
                raise
            except Exception as err:  # noqa: BLE001  (RecBole's own checks of the combination)
                line = suite.file.line("models", m_index) if suite.file else None
                raise InputError(f"RecBole rejects the config of {model} on {entry.name}: "
                                 f"{type(err).__name__}: {err}", suite.path, line) from None
            digest = config_hash(config)
            trainable = getattr(spec.cls, "trainable", True)
            staged = fit_only and trainable and bool(config.get("refit"))
            if staged:
                fit_settings = {**settings, "refit": False}
                fit_config = _resolved_config(spec, entry.name, fit_settings, data_root)
                fit_digest = config_hash(fit_config)
            for seed in suite.seeds:
                key = RunKey(suite.name, entry.name, model, seed)
                record = store.read(key)
                state = _state(record, digest, manifest_sha)
                if staged and state != "finished":
                    # The fit trains as the whole run's fit does, so both keep their progress in
                    # one place: either resumes what the other left.
                    runs.append(PlannedRun(key, fit_settings, fit_config, fit_digest, manifest.get("protocol"),
                                           manifest, manifest_sha, str(data_root), trainable,
                                           _state(record, fit_digest, manifest_sha), None,
                                           str(store.progress_dir(key, digest).resolve()), stage="fit"))
                    continue
                validation = (stored_validation(store, record, digest, manifest_sha)
                              if state == "changed" and trainable and config.get("refit") else None)
                runs.append(PlannedRun(key, settings, config, digest, manifest.get("protocol"), manifest,
                                       manifest_sha, str(data_root), trainable, state, validation,
                                       str(store.progress_dir(key, digest).resolve()) if trainable else None))
    return runs


def stored_validation(store: ResultStore, record: dict, digest: str, manifest_sha: str):
    """The early-stopped fit of ``record`` if a ``refit: true`` run with config hash ``digest`` can reuse it.

    It can when ``record`` is a finished run on the same data, tested as trained
    (``fit_protocol: train``), with per-case validation ranks stored, and its config
    differs from the refit run's in ``refit`` alone: the same seed, data and settings
    give the same early-stopped model, so training it again would only repeat it.
    """
    from bench.runner import ValidationStage

    if (record.get("status") != "finished" or record.get("fit_protocol") != "train"
            or record.get("best_epoch") is None
            or record.get("dataset_manifest_sha256", manifest_sha) != manifest_sha
            or config_hash({**record.get("config", {}), "refit": True}) != digest):
        return None
    ranks = store.load_ranks(record)
    valid_ranks = {name[len("valid_"):]: r for name, r in ranks.items() if name.startswith("valid_")}
    if not valid_ranks:
        return None
    return ValidationStage(
        curve=record.get("curve", []), best_epoch=int(record["best_epoch"]),
        epochs_trained=int(record.get("epochs_trained", len(record.get("curve", [])))),
        train_seconds=float(record.get("timings", {}).get("train_seconds", 0.0)),
        valid_ranks=valid_ranks,
        source={"commit": record.get("environment", {}).get("git_commit"),
                "finished_at": record.get("finished_at"), "config_hash": record.get("config_hash")})


def _state(record: dict | None, digest: str, manifest_sha: str) -> str:
    if record is None:
        return "missing"
    if record.get("config_hash") != digest or record.get("dataset_manifest_sha256", manifest_sha) != manifest_sha:
        return "changed"
    return "finished" if record.get("status") == "finished" else "failed"


def to_run(runs: list[PlannedRun], rerun_failed: bool = True, max_runs: int | None = None) -> list[PlannedRun]:
    """The runs to start, models that train first (they take longest)."""
    wanted = {"missing", "changed"} | ({"failed"} if rerun_failed else set())
    todo = [r for r in runs if r.state in wanted]
    todo.sort(key=lambda r: not r.trainable)  # stable: suite order otherwise
    return todo[:max_runs] if max_runs is not None else todo


# -- running a suite ---------------------------------------------------------------------------

@dataclass
class SuiteOutcome:
    runs: list[PlannedRun]
    ran: dict  # label -> "finished" | "failed", for the runs started now
    report: Path | None

    @property
    def failed(self) -> list[str]:
        return [label for label, status in self.ran.items() if status != "finished"]


def run_suite(suite: Suite, *, data_root: str | Path = DEFAULT_DATA_ROOT, results: str | Path = "results",
              reports: str | Path | None = "reports", cpus: int | None = None, cpus_per_run: float = 1,
              gpus_per_run: float | None = None, address: str | None = None, rerun_failed: bool = True,
              max_runs: int | None = None, dry_run: bool = False, use_tuned: bool = True,
              command: str | None = None, stream=sys.stderr, models: list[str] | None = None,
              fit_only: bool = False) -> SuiteOutcome:
    """Convert what is missing, plan, run what is not finished, write the report.

    ``models``: run only these of the suite's models; the report still shows every
    run of the suite that the store holds. ``fit_only``: see :func:`plan`.
    """
    store = ResultStore(results)
    prepare_datasets(suite, data_root, stream)
    runs = plan(suite, data_root, store, use_tuned, fit_only)
    if models is not None:
        runs = [r for r in runs if r.key.model in models]
    todo = to_run(runs, rerun_failed, max_runs)
    counts = {s: sum(r.state == s for r in runs) for s in ("finished", "failed", "changed", "missing")}
    print(f"suite {suite.name} ({suite.path}): {len(runs)} runs; stored: {counts['finished']} finished, "
          f"{counts['failed']} failed, {counts['changed']} with a changed config; to run now: {len(todo)}",
          file=stream, flush=True)
    if dry_run:
        for run in runs:
            action = "run" if run in todo else "skip"
            reuse = ("  (refit only: reuses the stored early-stopped fit)" if run.validation is not None
                     else "  (early-stopped fit only: the refit runs later)" if run.stage == "fit" else "")
            print(f"  {action:4s} {run.label:50s} {run.state:9s} config {run.config_hash[:12]}{reuse}", file=stream)
        return SuiteOutcome(runs, {}, None)
    ran = execute(todo, store, cpus=cpus or os.cpu_count() or 1, cpus_per_run=cpus_per_run,
                  gpus_per_run=gpus_per_run, address=address, stream=stream)
    report = None
    if reports is not None:
        from bench.report import write_report

        report = write_report(suite.name, store, Path(reports), suite.meta(command))
    return SuiteOutcome(runs, ran, report)


def only_models(suite: Suite, models: list[str]) -> list[str]:
    """The suite's models among ``models`` (in the suite's order); a name it lacks is an error."""
    wanted = [m.strip() for m in models if m.strip()]
    unknown = [m for m in wanted if m not in suite.models]
    if unknown or not wanted:
        raise InputError(f"--models: {', '.join(unknown) or '(none)'} not in suite {suite.name} "
                         f"(its models: {', '.join(suite.models)})", suite.path)
    return [m for m in suite.models if m in wanted]


# -- CLI ---------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    shipped = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml")))
    parser.add_argument("suite", nargs="?", default=None, metavar="SUITE",
                        help=f"a suite YAML file, or a shipped suite's name ({shipped}); default: {DEFAULT_SUITE}")
    parser.add_argument("--cpus", type=int, default=None, metavar="N",
                        help="CPUs of the local Ray instance = runs in parallel (default: all cores)")
    parser.add_argument("--cpus-per-run", type=float, default=1, metavar="N",
                        help="CPUs (and torch threads) per run (default 1)")
    parser.add_argument("--gpus-per-run", type=float, default=None, metavar="G",
                        help="GPUs per run, fractions allowed (default: 1 if a GPU is available, else 0)")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None,
                        help="an existing Ray cluster to run on (default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--results", default="results", help="results store (default: results)")
    parser.add_argument("--reports", default="reports", help="folder for the report (default: reports)")
    parser.add_argument("--data-root", default=DEFAULT_DATA_ROOT,
                        help=f"converted datasets (default: {DEFAULT_DATA_ROOT})")
    parser.add_argument("--rerun-failed", action=argparse.BooleanOptionalAction, default=True,
                        help="rerun runs whose stored record failed (default: yes); finished runs with "
                             "the same config are always skipped")
    parser.add_argument("--no-tuned", dest="use_tuned", action="store_false",
                        help="ignore tuned parameters in hyper/best/")
    parser.add_argument("--models", default=None, metavar="M1,M2",
                        help="with a SUITE: run only these of its models (the report still shows every stored "
                             "run); with --datasets: the models of a one-off comparison")
    parser.add_argument("--datasets", default=None, metavar="D1,D2",
                        help="a one-off comparison without a suite file: these datasets (converted on the fly "
                             "where a shipped suite knows them: ml100k, diginetica, beauty)")
    parser.add_argument("--seeds", default=None, metavar="0,1,2", help="one-off comparison: seeds (default 0)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="one-off comparison: a RecBole config key for every run (repeatable)")
    parser.add_argument("--name", default=None,
                        help="one-off comparison: its name, for results/<name>/ and reports/<name>.md "
                             "(default: derived from the models and datasets)")
    parser.add_argument("--max-runs", type=int, default=None, metavar="N", help="start at most N runs")
    parser.add_argument("--dry-run", action="store_true", help="check the suite and show the plan; train nothing")
    parser.add_argument("--fit-only", action="store_true",
                        help="models with refit: true run their early-stopped fit alone and store it; a later "
                             "bench run reuses it and runs only the refit (a run too long for one job as two)")


def _command_line(args: argparse.Namespace) -> str:
    argv = sys.argv[1:] if Path(sys.argv[0]).name in ("bench", "__main__.py") else None
    if argv and argv[0] == "run":
        return "bench " + " ".join(shlex.quote(a) for a in argv)
    return "bench run" + (f" {args.suite}" if args.suite else "")


def main(args: argparse.Namespace) -> int:
    for option in ("cpus", "max_runs"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise InputError(f"--{option.replace('_', '-')} must be at least 1")
    if args.cpus_per_run <= 0 or (args.gpus_per_run is not None and args.gpus_per_run < 0):
        raise InputError("--cpus-per-run must be positive and --gpus-per-run not negative")
    datasets = getattr(args, "datasets", None)
    if datasets:
        if args.suite:
            raise InputError("give either a SUITE or --datasets (a one-off comparison), not both")
        if not getattr(args, "models", None):
            raise InputError("--datasets needs --models (e.g. --models narm,pop --datasets ml100k)")
        try:
            seeds = [int(x) for x in (args.seeds or "0").split(",") if x.strip()]
        except ValueError:
            raise InputError(f"--seeds {args.seeds!r}: expected integers, e.g. 0,1,2") from None
        settings = dict(_setting(t) for t in (args.set or []))
        path = adhoc_suite([m.strip() for m in args.models.split(",") if m.strip()],
                           [d.strip() for d in datasets.split(",") if d.strip()], seeds, settings,
                           Path(args.results) / "adhoc", args.name)
        suite, models = load_suite(path, args.data_root), None
    else:
        for option in ("seeds", "set", "name"):
            if getattr(args, option, None):
                raise InputError(f"--{option} applies to a one-off comparison (--models with --datasets); "
                                 "a suite sets it in its file")
        suite = load_suite(find_suite(args.suite), args.data_root)
        models = only_models(suite, args.models.split(",")) if getattr(args, "models", None) else None
    outcome = run_suite(suite, data_root=args.data_root, results=args.results, reports=args.reports,
                        cpus=args.cpus, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                        address=args.address, rerun_failed=args.rerun_failed, max_runs=args.max_runs,
                        dry_run=args.dry_run, use_tuned=args.use_tuned, command=_command_line(args),
                        models=models, fit_only=args.fit_only)
    if outcome.report is not None:
        print(outcome.report)
    if outcome.failed:
        print(f"bench run: {len(outcome.failed)} run(s) failed: {', '.join(outcome.failed)} "
              f"(see {outcome.report or args.results})", file=sys.stderr)
        return 1
    return 0
