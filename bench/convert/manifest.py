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
          settings: dict, sources: list[Path], notes: list[str] | None = None) -> dict:
    """Write the manifest of the dataset files already in ``folder``; return it.

    ``notes`` are sentences for the reader (what stands for time, ...). They are not part
    of the dataset's identity (:func:`identity`): adding one does not make stored runs stale.
    """
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
    if notes:
        manifest["notes"] = list(notes)
    with open(folder / FILE_NAME, "w", encoding="utf-8", newline="\n") as f:
        f.write(_text(manifest))
    return manifest


def _text(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def identity(manifest: dict) -> str:
    """The dataset's identity as stored runs record it: the sha256 of its manifest without
    ``notes`` (for a manifest without notes, the sha256 of ``manifest.json`` itself)."""
    import hashlib

    return hashlib.sha256(_text({k: v for k, v in manifest.items() if k != "notes"}).encode()).hexdigest()


def read(folder: Path) -> dict:
    with open(folder / FILE_NAME, encoding="utf-8") as f:
        return json.load(f)
