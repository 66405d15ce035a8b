"""Delimited text tables (click logs, rating files, pairs) read into typed columns.

Column kinds: ``int`` (an int64 id), ``float``, ``timestamp`` (ISO 8601 -> int64
nanoseconds since the epoch, UTC) and ``date`` (``YYYY-MM-DD`` -> int64 days since
the epoch).

Two parsers give the same frame:

* pyarrow's multi-threaded CSV reader, when it is installed (``ray[tune]`` brings
  it) and the separator is one character: the 33M lines of the raw Yoochoose file
  parse in seconds instead of minutes;
* otherwise pandas' C reader, in chunks, with explicit dtypes.

When parsing fails, neither parser names a useful place, so the file is scanned
once more line by line to report the first bad line. That slow scan runs only on
the error path.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import InputError

Column = tuple[str, str]  # (name, kind)
CHUNK_ROWS = 4_000_000  # bounds the memory that text columns take in the pandas parser
SEPARATOR_NAMES = {r"\s+": "whitespace", "\t": "tabs"}


def check_int(text: str) -> int:
    """``int(text)`` for a plain decimal int64 (``int`` alone would also take ``1_0``)."""
    stripped = text.strip()
    if not stripped.lstrip("+-").isdigit():
        raise ValueError(text)
    value = int(stripped)
    if not -(2**63) <= value < 2**63:
        raise OverflowError(text)
    return value


def _check_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


VALIDATORS: dict[str, tuple[str, Callable[[str], object]]] = {
    "int": ("an integer id", check_int),
    "float": ("a number", float),
    "timestamp": ("an ISO 8601 timestamp", _check_timestamp),
    "date": ("a YYYY-MM-DD date", lambda text: date.fromisoformat(text.strip())),
}


def read_table(path: Path, *, sep: str, ncols: int, columns: dict[int, Column], what: str,
               skip: int = 0) -> pd.DataFrame:
    """The ``columns`` (``{position: (name, kind)}``) of a file of ``ncols`` fields per line.

    ``skip`` header lines are ignored; ``what`` names the format in errors.
    """
    spec = dict(sep=sep, ncols=ncols, columns=columns, what=what, skip=skip)
    if len(_split(_first_data_line(path, skip), sep)) != ncols:
        # A file of another format fails here, before a parser guesses a shape for it.
        raise diagnose(path, **spec)
    arrow = _pyarrow() if len(sep) == 1 else None
    try:
        frame = _read_arrow(arrow, path, **spec) if arrow else _read_pandas(path, **spec)
    except Exception as err:  # noqa: BLE001  (parsers raise many kinds; all mean a bad file)
        raise diagnose(path, **spec, cause=err) from None
    if frame.empty:
        raise InputError(f"no data rows (expected a {what} file)", path)
    return frame


def _first_data_line(path: Path, skip: int) -> str:
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for number, line in enumerate(f, 1):
            if number > skip and line.strip():
                return line.rstrip("\r\n")
    return ""


def _pyarrow():
    """``(pyarrow, pyarrow.csv)``, or None where pyarrow is not installed."""
    try:
        import pyarrow
        import pyarrow.csv
    except ImportError:
        return None
    return pyarrow, pyarrow.csv


def _read_arrow(arrow, path: Path, *, sep: str, ncols: int, columns: dict[int, Column], what: str,
                skip: int) -> pd.DataFrame:
    pa, pacsv = arrow
    types = {"int": pa.int64(), "float": pa.float64(), "timestamp": pa.timestamp("ns", tz="UTC"),
             "date": pa.date32()}
    names = [f"f{i}" for i in range(ncols)]
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names, skip_rows=skip),
        parse_options=pacsv.ParseOptions(delimiter=sep, quote_char=False),
        convert_options=pacsv.ConvertOptions(
            include_columns=[names[i] for i in columns],
            column_types={names[i]: types[kind] for i, (_, kind) in columns.items()},
            null_values=[], strings_can_be_null=False),  # an empty field is an error, not a NaN
    )
    frame = {}
    for i, (name, kind) in columns.items():
        values = table.column(names[i]).to_numpy()
        if kind == "timestamp":
            values = values.astype("datetime64[ns]").astype(np.int64)
        elif kind == "date":
            values = values.astype("datetime64[D]").astype(np.int64)
        frame[name] = values
    return pd.DataFrame(frame)


def _read_pandas(path: Path, *, sep: str, ncols: int, columns: dict[int, Column], what: str,
                 skip: int) -> pd.DataFrame:
    dtypes = {"int": np.int64, "float": np.float64}
    # All ncols named and no usecols: a line with extra fields is then an error, not dropped.
    reader = pd.read_csv(path, sep=sep, header=None, names=list(range(ncols)), index_col=False, skiprows=skip,
                         dtype={i: dtypes.get(columns[i][1], object) if i in columns else object for i in range(ncols)},
                         engine="c", na_filter=False, encoding="utf-8", chunksize=CHUNK_ROWS)
    chunks = []
    with reader:
        for chunk in reader:
            chunk = chunk[list(columns)]
            # Convert text columns chunk by chunk: 33M timestamps never sit in memory as strings.
            for i, (_, kind) in columns.items():
                if kind == "timestamp":
                    stamps = pd.to_datetime(chunk[i], format="ISO8601", utc=True)
                    chunk[i] = stamps.dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
                elif kind == "date":
                    days = pd.to_datetime(chunk[i], format="%Y-%m-%d")
                    chunk[i] = days.to_numpy().astype("datetime64[D]").astype(np.int64)
            chunk.columns = [columns[i][0] for i in chunk.columns]
            chunks.append(chunk)
    if not chunks:
        return pd.DataFrame(columns=[name for name, _ in columns.values()])
    return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)


def _split(line: str, sep: str) -> list[str]:
    return line.split() if sep == r"\s+" else line.split(sep)


def diagnose(path: Path, *, sep: str, ncols: int, columns: dict[int, Column], what: str, skip: int = 0,
             cause: Exception | None = None) -> InputError:
    """The InputError for a table that failed to parse, naming its first bad line."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if number <= skip or not line.strip():
                continue  # both parsers skip blank lines too
            fields = _split(line, sep)
            if len(fields) != ncols:
                shown = line if len(line) <= 60 else line[:57] + "..."
                found = f"{len(fields)} field{'s' if len(fields) != 1 else ''}"
                return InputError(f"not a {what} line ({found} separated by "
                                  f"{SEPARATOR_NAMES.get(sep, repr(sep))}, expected {ncols}): {shown!r}", path, number)
            for i, (name, kind) in columns.items():
                description, validate = VALIDATORS[kind]
                try:
                    validate(fields[i])
                except (ValueError, OverflowError):
                    return InputError(f"{name} is not {description}: {fields[i][:40]!r}", path, number)
    reason = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else "unknown reason"
    return InputError(f"could not read as a {what} file: {reason}", path)
