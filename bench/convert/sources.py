"""Reading published input files: existence checks, checksums, delimited tables.

Tables are parsed by pandas' C reader with explicit dtypes (the raw Yoochoose file
has 33M lines). When pandas fails, its message names no useful place, so the file
is scanned once more line by line to report the first bad line. That slow scan
runs only on the error path.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import InputError

Validator = Callable[[str], object]
CHUNK_ROWS = 4_000_000  # bounds the memory that text columns take while parsing


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a readable, non-empty file; InputError otherwise."""
    if not path.exists():
        raise InputError(f"missing file ({what})", path)
    if not path.is_file():
        raise InputError(f"not a file ({what})", path)
    if path.stat().st_size == 0:
        raise InputError(f"empty file ({what})", path)
    return path


def file_in(src: Path, pattern: str, what: str) -> Path:
    """``src`` itself, or the single file matching ``pattern`` in the folder ``src``."""
    if not src.is_dir():
        return src
    candidates = sorted(src.glob(pattern))
    if len(candidates) != 1:
        raise InputError(f"expected one {pattern} file ({what}) in the folder, found {len(candidates)}", src)
    return candidates[0]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def first_line(path: Path) -> str:
    """The first line without its line ending (undecodable bytes replaced)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return f.readline().rstrip("\r\n")


def _split(line: str, sep: str) -> list[str]:
    return line.split() if sep == r"\s+" else line.split(sep)


def check_int(text: str) -> int:
    """``int(text)`` for plain decimal ids (``int`` alone would also take ``1_0``)."""
    stripped = text.strip()
    if not stripped.lstrip("+-").isdigit():
        raise ValueError(text)
    value = int(stripped)
    if not -(2**63) <= value < 2**63:
        raise OverflowError(text)
    return value


def _first_bad_line(path: Path, what: str, sep: str, ncols: int, skip: int,
                    validators: dict[int, tuple[str, Validator]]) -> InputError | None:
    """An InputError for the first line that does not fit, or None if all fit."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for number, line in enumerate(f, 1):
            if number <= skip:
                continue
            line = line.rstrip("\r\n")
            if not line.strip():
                continue  # pandas skips blank lines too
            fields = _split(line, sep)
            if len(fields) != ncols:
                shown = line if len(line) <= 60 else line[:57] + "..."
                return InputError(f"not a {what} line ({len(fields)} fields separated by {sep!r}, "
                                  f"expected {ncols}): {shown!r}", path, number)
            for col, (name, validate) in validators.items():
                try:
                    validate(fields[col])
                except (ValueError, OverflowError):
                    return InputError(f"{name} is not valid: {fields[col][:40]!r}", path, number)
    return None


def read_table(path: Path, *, sep: str, ncols: int, columns: dict[int, str], what: str,
               int_cols: tuple[str, ...] = (), float_cols: tuple[str, ...] = (),
               validators: dict[str, Validator] | None = None, skip: int = 0,
               transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> pd.DataFrame:
    """The columns ``{index: name}`` of a delimited text file, typed int64 / float64.

    The file is read in chunks; ``transform`` turns each chunk's text columns into
    compact ones (raising ValueError on a bad value) so that 33M timestamps never sit
    in memory as strings. ``validators`` (by column name) check those text columns
    again, only to locate the bad line once something failed.
    """
    spec = dict(sep=sep, ncols=ncols, columns=columns, what=what, int_cols=int_cols,
                float_cols=float_cols, validators=validators, skip=skip)
    line = first_line(path) if skip == 0 else None
    if line is not None and len(_split(line, sep)) != ncols:
        # Catches a file of another format before pandas guesses a shape for it.
        raise _first_bad_line(path, what, sep, ncols, skip, {}) or InputError(f"not a {what} file", path, 1)
    dtypes = {name: np.int64 for name in int_cols} | {name: np.float64 for name in float_cols}
    chunks = []
    try:
        reader = pd.read_csv(path, sep=sep, header=None, skiprows=skip, usecols=list(columns),
                             dtype={idx: dtypes.get(name, object) for idx, name in columns.items()},
                             engine="c", na_filter=False, encoding="utf-8", chunksize=CHUNK_ROWS)
        with reader:
            for chunk in reader:
                chunk.columns = [columns[idx] for idx in chunk.columns]
                chunks.append(transform(chunk) if transform else chunk)
    except Exception as err:  # noqa: BLE001  (pandas raises many kinds; all mean a bad file)
        raise diagnose(path, **spec, cause=err) from None
    if not chunks or sum(map(len, chunks)) == 0:
        raise InputError(f"no data rows (expected a {what} file)", path)
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


def diagnose(path: Path, *, sep: str, ncols: int, columns: dict[int, str], what: str,
             int_cols: tuple[str, ...] = (), float_cols: tuple[str, ...] = (),
             validators: dict[str, Validator] | None = None, skip: int = 0,
             cause: Exception | None = None) -> InputError:
    """The InputError for a table that failed to parse, naming its first bad line."""
    checks: dict[int, tuple[str, Validator]] = {}
    for idx, name in columns.items():
        if name in int_cols:
            checks[idx] = (f"{name} (an integer id)", check_int)
        elif name in float_cols:
            checks[idx] = (f"{name} (a number)", float)
        elif validators and name in validators:
            checks[idx] = (name, validators[name])
    bad = _first_bad_line(path, what, sep, ncols, skip, checks)
    if bad is not None:
        return bad
    reason = str(cause).strip().splitlines()[0] if cause is not None else "unknown reason"
    return InputError(f"could not read as a {what} file: {reason}", path)
