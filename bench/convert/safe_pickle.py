"""Loading pickles from the internet without running them.

A pickle can name any importable callable (``os.system``...) and the stock
unpickler calls it. Every such reference goes through ``find_class``, which here
always refuses, so only the built-in opcodes remain (lists, tuples, ints, but also
strings, dicts, floats...). The structure checks below then admit nothing but the
lists, tuples and ints the SR-GNN files are made of.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

from bench.errors import InputError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class _Refused(Exception):
    """Raised from ``find_class``; kept apart from pickle's own errors."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global, so loading never runs code."""

    def find_class(self, module: str, name: str):
        raise _Refused(f"{module}.{name}")


def load(path: Path):
    """The object pickled in ``path``; InputError if it is not a plain-data pickle."""
    data = path.read_bytes()
    if not data:
        raise InputError("empty file (expected a pickle)", path)
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except _Refused as err:
        raise InputError(f"refused to load: the pickle references {err} "
                         "(only lists, tuples and ints are allowed)", path) from None
    except RecursionError:
        raise InputError("not a valid pickle: nested too deeply", path) from None
    except Exception as err:  # noqa: BLE001  (truncated or foreign data fails in many ways)
        raise InputError(f"not a valid pickle (truncated or another format): "
                         f"{type(err).__name__}: {err}", path) from None


def _describe(value) -> str:
    return type(value).__name__


def check_int_lists(value, path: Path, what: str) -> list[list[int]]:
    """``value`` if it is a list of non-empty lists of int64 ints, else InputError."""
    if type(value) is not list:
        raise InputError(f"expected {what} as a list of lists of ints, got a {_describe(value)}", path)
    for i, seq in enumerate(value):
        if type(seq) is not list:
            raise InputError(f"{what} #{i} is a {_describe(seq)}, expected a list of ints", path)
        if not seq:
            raise InputError(f"{what} #{i} is empty", path)
        kinds = set(map(type, seq))
        if kinds != {int}:
            bad = next(x for x in seq if type(x) is not int)
            raise InputError(f"{what} #{i} holds a {_describe(bad)}, expected ints only", path)
        if min(seq) < INT64_MIN or max(seq) > INT64_MAX:
            raise InputError(f"{what} #{i} holds an id outside the 64-bit range", path)
    return value


def check_ints(value, path: Path, what: str) -> list[int]:
    """``value`` if it is a list of int64 ints, else InputError."""
    if type(value) is not list:
        raise InputError(f"expected {what} as a list of ints, got a {_describe(value)}", path)
    for i, x in enumerate(value):
        if type(x) is not int:
            raise InputError(f"{what} #{i} is a {_describe(x)}, expected an int", path)
        if not INT64_MIN <= x <= INT64_MAX:
            raise InputError(f"{what} #{i} is outside the 64-bit range", path)
    return value
