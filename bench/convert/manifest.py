"""``manifest.json``: what was converted, how, and checksums to prove it.

Written with sorted keys and without timestamps, so that converting the same input
twice gives byte-identical output.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.convert.sources import sha256

FILE_NAME = "manifest.json"


def source_entry(path: Path) -> dict:
    return {"path": path.as_posix(), "bytes": path.stat().st_size, "sha256": sha256(path)}


def write(folder: Path, *, name: str, fmt: str, protocol: str, max_len: int, counts: dict,
          settings: dict, sources: list[Path]) -> dict:
    """Write the manifest of the dataset files already in ``folder``; return it."""
    manifest = {
        "name": name,
        "format": fmt,
        "protocol": protocol,
        "max_len": max_len,
        **counts,
        "settings": settings,
        "sources": [source_entry(path) for path in sources],
        "files": {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.name != FILE_NAME},
    }
    with open(folder / FILE_NAME, "w", encoding="utf-8", newline="\n") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    return manifest


def read(folder: Path) -> dict:
    with open(folder / FILE_NAME, encoding="utf-8") as f:
        return json.load(f)
