"""Search spaces: one YAML per model in ``hyper/spaces/``, validated, sampled by Optuna.

A space file maps each tuned parameter, named exactly as the model's RecBole config
key, to its distribution::

    learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    layers[0]:     {type: int, low: 64, high: 512, step: 32}   # element 0 of a list key
    loss:          {type: categorical, choices: [bpr-max, cross-entropy]}
    bpreg:         {type: float, low: 0.0, high: 2.0, step: 0.05, when: {loss: bpr-max}}

* ``type``: ``float``, ``int`` or ``categorical``; ``low``/``high`` (inclusive),
  optional ``step`` and ``log: true`` for numbers; ``choices`` for categoricals.
* ``when``: the parameter is sampled only if every named earlier categorical
  parameter took the given value (or one of a list of values); otherwise the model's
  default applies.
* ``key[i]`` tunes one element of a list-valued key (NARM's ``dropout_probs``,
  GRU4Rec's ``layers``); the other elements keep the model's default.

The file is checked before any trial runs: an unknown key for the model, an empty or
inverted range, a bad type or a dangling condition raises
:class:`bench.errors.InputError` naming the file and line.
"""
from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import InputError

SPACES_DIR = Path(__file__).resolve().parent / "spaces"
TYPES = ("float", "int", "categorical")
FIELDS = {"type", "low", "high", "step", "log", "choices", "when"}
_NAME = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<index>\d+)\])?$")


def space_path(model: str) -> Path:
    """The default space file of a suite model name (``recbole:NARM`` -> ``recbole-NARM.yaml``)."""
    return SPACES_DIR / (model.replace(":", "-") + ".yaml")


@dataclass(frozen=True)
class Param:
    """One tuned parameter, as written in the space file."""

    name: str  # as Optuna records it: ``key`` or ``key[i]``
    key: str  # the RecBole config key
    index: int | None
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple = ()
    when: dict = field(default_factory=dict)  # {earlier param name: allowed values (tuple)}
    line: int = 0

    def active(self, sampled: dict) -> bool:
        return all(sampled.get(name, _MISSING) in allowed for name, allowed in self.when.items())

    def suggest(self, trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def describe(self) -> str:
        if self.type == "categorical":
            text = "{" + ", ".join(map(str, self.choices)) + "}"
        else:
            text = f"[{self.low}, {self.high}]" + (f" step {self.step}" if self.step else "") + (" log" if self.log else "")
        if self.when:
            text += " when " + ", ".join(f"{k} in {list(v)}" for k, v in self.when.items())
        return text


_MISSING = object()


@dataclass
class SearchSpace:
    model: str
    path: Path
    params: list[Param]
    defaults: dict  # the model's default config values (for list keys)

    def sample(self, trial) -> dict:
        """Suggest every active parameter on ``trial``; returns the RecBole config overrides."""
        sampled: dict = {}
        for param in self.params:
            if param.active(sampled):
                sampled[param.name] = param.suggest(trial)
        return self.to_config(sampled)

    def to_config(self, flat: dict) -> dict:
        """Optuna's flat parameters (``layers[0]``) -> RecBole config values (``layers: [..]``)."""
        config: dict = {}
        for param in self.params:
            if param.name not in flat:
                continue
            value = flat[param.name]
            if param.type == "float" and param.step:
                value = round(value, 12)  # Optuna's grid arithmetic leaves 0.17500000000000002
            if param.index is None:
                config[param.key] = value
            else:
                values = config.setdefault(param.key, list(copy.deepcopy(self.defaults[param.key])))
                values[param.index] = value
        return config

    @property
    def digest(self) -> str:
        """Identifies the space's content, so that a study notices when its space changed."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]

    def describe(self) -> list[str]:
        return [f"{p.name}: {p.type} {p.describe()}" for p in self.params]


def model_defaults(model: str) -> tuple[dict, list[str]]:
    """The config keys a model understands, with their defaults, and the files they came from.

    Every model understands RecBole's own training keys (``overall.yaml``, the dataset
    keys such as ``MAX_ITEM_LIST_LENGTH``); on top of that, our models the keys of
    their YAML beside the module, RecBole's models the keys of RecBole's model YAML
    (and of our settings for its reference row). The same files as the registry
    gives the run's config, so a tuned key is one the run reads.
    """
    from bench.data import HARNESS_DEFAULTS
    from bench.registry import resolve_model

    spec = resolve_model(model)  # InputError for an unknown model
    properties = _recbole_properties()
    files = [properties / "overall.yaml", properties / "dataset" / "sample.yaml", HARNESS_DEFAULTS]
    if not spec.ours:  # RecBole's model YAML, then our settings for its reference row
        files.append(properties / "model" / f"{spec.class_name}.yaml")
    files += [Path(f) for f in spec.config_files]
    defaults: dict = {}
    for path in files:
        if path.is_file():
            defaults.update(yaml.safe_load(path.read_text()) or {})
    return defaults, [str(f) for f in files if f.is_file()]


def _recbole_properties() -> Path:
    import recbole

    return Path(recbole.__file__).resolve().parent / "properties"


def load_space(model: str, path: str | Path | None = None) -> SearchSpace:
    """Read and check the space file of ``model`` (default ``hyper/spaces/<model>.yaml``)."""
    path = Path(path) if path is not None else space_path(model)
    if not path.is_file():
        raise InputError(f"no search space for model {model!r} (write one, or pass --space FILE)", path)
    defaults, sources = model_defaults(model)
    try:
        root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"not valid YAML: {getattr(err, 'problem', err)}", path,
                         None if mark is None else mark.line + 1) from None
    if root is None or not isinstance(root, yaml.MappingNode) or not root.value:
        raise InputError("a search space is a mapping of parameter names to distributions; this one is empty",
                         path, None if root is None else root.start_mark.line + 1)
    params: list[Param] = []
    for key_node, value_node in root.value:
        params.append(_parse_param(key_node, value_node, params, defaults, sources, model, path))
    return SearchSpace(model, path, params, defaults)


def _construct(node):
    """The Python value of one composed YAML node (composing keeps the line numbers)."""
    return yaml.SafeLoader("").construct_document(node)


def _parse_param(key_node, value_node, earlier: list[Param], defaults: dict, sources: list[str],
                 model: str, path: Path) -> Param:
    line = key_node.start_mark.line + 1

    def fail(message: str, node=None):
        raise InputError(message, path, line if node is None else node.start_mark.line + 1)

    name = str(_construct(key_node))
    match = _NAME.match(name)
    if match is None:
        fail(f"{name!r} is not a config key (write `key` or `key[i]`)")
    key, index = match["key"], match["index"]
    if key not in defaults:
        fail(f"unknown parameter {key!r} for model {model!r} (its keys come from {', '.join(Path(s).name for s in sources)})")
    if index is not None:
        index = int(index)
        default = defaults[key]
        if not isinstance(default, list) or index >= len(default):
            fail(f"{name!r}: the default of {key!r} is {default!r}, not a list with an element {index}")
    if any(p.name == name for p in earlier):
        fail(f"parameter {name!r} is given twice")
    if any(p.key == key and (p.index is None) != (index is None) for p in earlier):
        fail(f"{name!r}: tune either the whole list {key!r} or its elements, not both")
    if not isinstance(value_node, yaml.MappingNode):
        fail(f"{name!r}: expected a mapping such as {{type: float, low: 0.0, high: 1.0}}", value_node)
    spec = _construct(value_node)
    unknown = sorted(set(spec) - FIELDS)
    if unknown:
        fail(f"{name!r}: unknown field(s) {', '.join(map(str, unknown))} (allowed: {', '.join(sorted(FIELDS))})")
    kind = spec.get("type")
    if kind not in TYPES:
        fail(f"{name!r}: type must be one of {', '.join(TYPES)}, not {kind!r}")
    when = _parse_when(name, spec.get("when"), earlier, fail)
    common = dict(name=name, key=key, index=index, type=kind, when=when, line=line)
    if kind == "categorical":
        return _categorical(spec, common, fail)
    return _numeric(spec, common, defaults.get(key), fail)


def _categorical(spec: dict, common: dict, fail) -> Param:
    name = common["name"]
    extra = sorted({"low", "high", "step", "log"} & set(spec))
    if extra:
        fail(f"{name!r}: a categorical parameter takes `choices`, not {', '.join(extra)}")
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        fail(f"{name!r}: `choices` must be a non-empty list")
    for choice in choices:
        if choice is not None and not isinstance(choice, (bool, int, float, str)):
            fail(f"{name!r}: choice {choice!r} is not a number, string, boolean or null")
    if len({repr(c) for c in choices}) != len(choices):
        fail(f"{name!r}: `choices` has duplicates")
    return Param(**common, choices=tuple(choices))


def _numeric(spec: dict, common: dict, default, fail) -> Param:
    name, kind = common["name"], common["type"]
    if "choices" in spec:
        fail(f"{name!r}: `choices` belongs to a categorical parameter")
    low, high, step, log = spec.get("low"), spec.get("high"), spec.get("step"), spec.get("log", False)
    number = int if kind == "int" else (int, float)
    for field_name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, number):
            fail(f"{name!r}: `{field_name}` must be {'an integer' if kind == 'int' else 'a number'}, not {value!r}")
    if low >= high:
        fail(f"{name!r}: the range [{low}, {high}] is empty or inverted (low must be < high)")
    if not isinstance(log, bool):
        fail(f"{name!r}: `log` must be true or false")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, number) or step <= 0:
            fail(f"{name!r}: `step` must be a positive {'integer' if kind == 'int' else 'number'}, not {step!r}")
        if log and not (kind == "int" and step == 1):
            fail(f"{name!r}: `step` and `log: true` cannot be combined")
        if step > high - low:
            fail(f"{name!r}: `step` {step} is wider than the range [{low}, {high}]")
    if log and low <= 0:
        fail(f"{name!r}: `log: true` needs low > 0, not {low}")
    if isinstance(default, (str, bool)):
        fail(f"{name!r}: the model's default is {default!r}; use type: categorical")
    return Param(**common, low=low, high=high, step=step, log=log)


def _parse_when(name: str, when, earlier: list[Param], fail) -> dict:
    if when is None:
        return {}
    if not isinstance(when, dict) or not when:
        fail(f"{name!r}: `when` must be a mapping such as {{loss: bpr-max}}")
    parsed = {}
    for other, values in when.items():
        parent = next((p for p in earlier if p.name == other), None)
        if parent is None:
            fail(f"{name!r}: `when` refers to {other!r}, which is not a parameter defined above it")
        if parent.type != "categorical":
            fail(f"{name!r}: `when` can only test a categorical parameter; {other!r} is {parent.type}")
        values = tuple(values) if isinstance(values, list) else (values,)
        for value in values:
            if value not in parent.choices:
                fail(f"{name!r}: `when: {{{other}: {value}}}` can never hold; {other!r} takes {list(parent.choices)}")
        parsed[str(other)] = values
    return parsed
