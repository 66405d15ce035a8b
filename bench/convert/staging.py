"""All-or-nothing output: a dataset folder is either the complete new one or the old one.

Files are written into a temporary folder beside ``OUT/NAME`` (same filesystem, so
renames are atomic). On success the previous ``OUT/NAME``, if any, is renamed away,
the new folder takes its place, and only then is the old one deleted. On failure the
temporary folder is removed and the previous output is untouched.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(out_root: Path, name: str) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes ``out_root / name`` if the block succeeds."""
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out_root))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the dataset is for everyone
        yield tmp
        _replace(tmp, out_root / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(new: Path, final: Path) -> None:
    if not (final.exists() or final.is_symlink()):
        os.rename(new, final)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
    old = trash / final.name
    os.rename(final, old)
    try:
        os.rename(new, final)
    except BaseException:
        os.rename(old, final)  # put the previous good output back
        shutil.rmtree(trash, ignore_errors=True)
        raise
    shutil.rmtree(trash, ignore_errors=True)
