"""MovieLens ratings as implicit feedback: ``ratings.dat``, ``ratings.csv``, ``u.data`` or RecBole's atomic ``.inter``.

* ``ratings.dat`` (ML-1M, ML-10M): ``user::item::rating::timestamp``;
* ``ratings.csv`` (ML-20M, ML-25M, ML-32M, ml-latest): a header line
  ``userId,movieId,rating,timestamp``, then comma-separated values;
* ``u.data`` (ML-100k): ``user<TAB>item<TAB>rating<TAB>timestamp``;
* RecBole's atomic file (``ml-100k.inter``, shipped inside the ``recbole`` package):
  tab-separated with a typed header ``user_id:token item_id:token rating:float timestamp:float``.

Every rating is an interaction; a user's sequence is ordered by timestamp, ties in
file order. Users come in the order of their first rating. Leave-one-out protocol,
history length 200 for ``ratings.dat`` and ``ratings.csv`` (the convention for MovieLens-1M and
-20M), else 50.
"""
from __future__ import annotations

import os
from pathlib import Path

from bench.convert.sequences import Loaded, UserData
from bench.convert.sources import column_key, first_line, require_file
from bench.convert.tables import read_table
from bench.errors import InputError

KNOWN_NAMES = ("ratings.dat", "ratings.csv", "u.data")
CSV_HEADER = ("userid", "movieid", "rating", "timestamp")
USER, ITEM, TIME = ("user", "int"), ("item", "int"), ("timestamp", "float")


def recbole_ml100k_path() -> Path:
    """The ml-100k atomic folder that ships inside the installed ``recbole`` package."""
    import bench  # noqa: F401  (the compatibility shims must run before recbole)
    import recbole

    return Path(os.path.dirname(recbole.__file__)) / "dataset_example" / "ml-100k"


def _find(src: Path) -> Path:
    """The ratings file: ``src`` itself, or the known file in the folder ``src``."""
    if not src.is_dir():
        return src
    for name in KNOWN_NAMES + (f"{src.name}.inter",):
        if (src / name).is_file():
            return src / name
    inter = sorted(src.glob("*.inter"))
    if len(inter) == 1:
        return inter[0]
    raise InputError("no MovieLens ratings file in the folder (expected ratings.dat, ratings.csv, u.data or one "
                     ".inter file)",
                     src)


def _atomic_columns(path: Path, header: str) -> dict[int, tuple[str, str]]:
    """Column positions of user_id, item_id and timestamp from a typed RecBole header."""
    names = [field.split(":")[0] for field in header.split("\t")]
    wanted = {"user_id": USER, "item_id": ITEM, "timestamp": TIME}
    missing = [name for name in wanted if name not in names]
    if missing:
        raise InputError(f"RecBole atomic header lacks {', '.join(missing)}", path, 1)
    return {names.index(name): short for name, short in wanted.items()}


def read(src: Path) -> Loaded:
    """Read a MovieLens ratings file (or the folder holding one)."""
    path = require_file(_find(src), "MovieLens ratings")
    header = first_line(path).lstrip("\ufeff")
    if "::" in header:
        # A one-character separator keeps pandas' fast C reader: '::' leaves empty fields between.
        frame = read_table(path, sep=":", ncols=7, columns={0: USER, 2: ITEM, 6: TIME},
                           what="MovieLens ratings.dat (user::item::rating::timestamp)")
        default_max_len = 200
    elif tuple(map(column_key, header.split(","))) == CSV_HEADER:
        frame = read_table(path, sep=",", ncols=4, columns={0: USER, 1: ITEM, 3: TIME},
                           what="MovieLens ratings.csv (userId,movieId,rating,timestamp)", skip=1)
        default_max_len = 200
    elif ":token" in header or ":float" in header:
        frame = read_table(path, sep="\t", ncols=len(header.split("\t")), columns=_atomic_columns(path, header),
                           what="RecBole atomic .inter", skip=1)
        default_max_len = 50
    elif "\t" in header:
        frame = read_table(path, sep="\t", ncols=4, columns={0: USER, 1: ITEM, 3: TIME},
                           what="MovieLens u.data (user item rating timestamp, tab-separated)")
        default_max_len = 50
    else:
        raise InputError("not a MovieLens ratings file (expected ratings.dat, ratings.csv with the header "
                         "userId,movieId,rating,timestamp, u.data or a RecBole .inter file)", path, 1)
    data = UserData.from_events(frame["user"].to_numpy(), frame["item"].to_numpy(), frame["timestamp"].to_numpy())
    return Loaded(data, [path], default_max_len=default_max_len)
