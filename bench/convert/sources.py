"""Published input files: finding them, checking they exist and are not empty, checksums."""
from __future__ import annotations

import hashlib
from pathlib import Path

from bench.errors import InputError


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


def column_key(name: str) -> str:
    """A header name whatever the spelling of the copy: ``sessionId``, ``session_id``
    and ``SessionID`` are all ``sessionid``."""
    return name.strip().replace("_", "").lower()


def header_names(path: Path, sep: str) -> list[str]:
    """The first line's fields as :func:`column_key` keys."""
    return [column_key(name) for name in first_line(path).lstrip("\ufeff").split(sep)]
