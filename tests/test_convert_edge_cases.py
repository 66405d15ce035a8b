"""Property test: random files of every format, with the edge cases real files have,
convert, keep every id inside the vocabulary, and train every model family.

Each generated file holds, where its format can express them:

* users (sessions) with 1 or 2 actions, and an item held only by such a user;
* an item that is only ever a test target;
* sparse, huge ids (up to 10^15);
* repeated lines, trailing blank lines and Windows line ends.

The files are random but seeded, so a failure is reproducible from its test id.
"""
from __future__ import annotations

import pickle
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from bench.convert import convert
from bench.convert.inter_files import read_rows
from bench.errors import InputError

HUGE = 10**15
SEEDS = (0, 1)


def _ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct sparse ids, some of them huge."""
    small = rng.choice(np.arange(1, 50 * n), size=n, replace=False)
    huge = HUGE - rng.choice(np.arange(1, 10**6), size=n, replace=False)
    return np.where(rng.random(n) < 0.3, huge, small)


def _user_sequences(rng: np.random.Generator) -> tuple[list[list[int]], int, int]:
    """Users' item sequences with short users; returns (sequences, a short user's only item,
    an item that is only ever a last item, i.e. a test target)."""
    items = _ids(rng, 60)
    popularity = rng.zipf(1.5, size=len(items)).astype(float)
    p = popularity / popularity.sum()
    lengths = rng.choice([1, 2, 3, 4, 7, 12, 60], size=80, p=[.15, .15, .2, .15, .15, .15, .05])
    seqs = [list(rng.choice(items[:-2], size=n, p=p[:-2] / p[:-2].sum())) for n in lengths]
    for s in seqs[:10]:
        if len(s) > 3:
            s[2] = s[1]  # a repeated consecutive action
    only_short, only_test = int(items[-2]), int(items[-1])
    seqs.append([only_short])  # a one-action user whose item nobody else holds
    seqs.append([int(items[0]), int(items[1])])  # a two-action user
    seqs.append([int(items[0]), int(items[1]), int(items[2]), only_test])
    return [[int(i) for i in s] for s in seqs], only_short, only_test


def _write_lines(path: Path, lines: list[str], rng: np.random.Generator) -> Path:
    """Windows line ends on some files, and trailing blank lines."""
    end = "\r\n" if rng.random() < 0.5 else "\n"
    path.write_bytes((end.join(lines) + end + end + end).encode())
    return path


def _pairs(folder: Path, rng: np.random.Generator) -> Path:
    seqs, *_ = _user_sequences(rng)
    users = _ids(rng, len(seqs))
    lines = [f"{u} {i}" for u, s in zip(users, seqs) for i in s]
    lines.insert(5, lines[4])  # a repeated line: the same action twice
    return _write_lines(folder / "pairs.txt", lines, rng)


def _user_lines(folder: Path, rng: np.random.Generator) -> Path:
    seqs, *_ = _user_sequences(rng)
    users = _ids(rng, len(seqs))
    return _write_lines(folder / "users.txt", [" ".join(map(str, [u, *s])) for u, s in zip(users, seqs)], rng)


MOVIELENS_LAYOUTS = ("u.data", "ratings.csv", "ratings.dat")


def _movielens(folder: Path, rng: np.random.Generator, layout: str = "u.data") -> Path:
    seqs, *_ = _user_sequences(rng)
    users = _ids(rng, len(seqs))
    sep = {"u.data": "\t", "ratings.csv": ",", "ratings.dat": "::"}[layout]
    lines, t = [], 978_300_000
    for u, s in zip(users, seqs):
        for i in s:
            t += int(rng.integers(0, 3))  # ties in time keep file order
            rating = int(rng.integers(1, 6)) if layout != "ratings.csv" else rng.integers(1, 11) / 2
            lines.append(sep.join(map(str, (u, i, rating, t))))
    order = rng.permutation(len(lines))  # the files are not sorted by user or time
    lines = [lines[k] for k in order]
    lines.insert(3, lines[2])
    if layout == "ratings.csv":
        lines.insert(0, "userId,movieId,rating,timestamp")
    return _write_lines(folder / layout, lines, rng)


def _srgnn(folder: Path, rng: np.random.Generator) -> Path:
    seqs, only_short, only_test = _user_sequences(rng)
    train = [s for s in seqs if s[-1] != only_test]
    test_sessions = [s for s in seqs[:15] if len(s) >= 2] + [seqs[-1]]
    prefixes, labels = [], []
    for s in test_sessions:
        for k in range(len(s) - 1, 0, -1):  # longest prefix first, as published
            prefixes.append(s[:k])
            labels.append(s[k])
    with open(folder / "all_train_seq.txt", "wb") as f:
        pickle.dump(train, f)
    with open(folder / "test.txt", "wb") as f:
        pickle.dump((prefixes, labels), f)
    return folder


def _clicks(rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(session, item, second) clicks over 40 days; frequent items pass the >= 5 filter."""
    rows, sid = [], 0
    items = _ids(rng, 40)
    p = 1 / np.arange(1, len(items) + 1) ** 0.8  # long-tailed: the rarest fall under the >= 5 filter
    p /= p.sum()
    for day in range(40):
        for _ in range(12):
            sid += int(rng.integers(1, 1000))  # sparse session ids
            n = int(rng.choice([1, 2, 3, 5, 9]))
            start = day * 86_400 + int(rng.integers(0, 80_000))
            rows += [(sid, int(i), start + 7 * k) for k, i in enumerate(rng.choice(items, size=n, p=p))]
    rows.insert(10, rows[9])  # a repeated line
    return rows


def _diginetica_raw(folder: Path, rng: np.random.Generator) -> Path:
    first = date(2016, 1, 1)
    lines = ["sessionId;userId;itemId;timeframe;eventdate"]
    lines += [f"{s};NA;{i};{t};{first + timedelta(days=t // 86_400)}" for s, i, t in _clicks(rng)]
    return _write_lines(folder / "train-item-views.csv", lines, rng)


def _yoochoose_raw(folder: Path, rng: np.random.Generator) -> Path:
    epoch = datetime(2014, 4, 1, tzinfo=timezone.utc)
    lines = [f"{s},{(epoch + timedelta(seconds=t)).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z,{i},0"
             for s, i, t in _clicks(rng)]
    return _write_lines(folder / "yoochoose-clicks.dat", lines, rng)


GENERATORS = {"pairs": _pairs, "user-lines": _user_lines, "movielens": _movielens, "srgnn": _srgnn,
              "diginetica-raw": _diginetica_raw, "yoochoose-raw": _yoochoose_raw}
OPTIONS = {"yoochoose-raw": {"fraction": 4}}
MODELS = ["narm", "sasrec", "gru4rec", "pop", "spop", "itemknn", "bprmf", "recbole:SASRec"]


def _converted(fmt: str, seed: int, tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(seed)
    if fmt == "movielens":  # each seed another of the three MovieLens layouts
        path = _movielens(src, rng, MOVIELENS_LAYOUTS[seed % len(MOVIELENS_LAYOUTS)])
    else:
        path = GENERATORS[fmt](src, rng)
    return convert(fmt, path, "edge", tmp_path / "atomic", **OPTIONS.get(fmt, {}))


def _catalogue(folder: Path) -> set[str]:
    lines = (folder / "edge.item").read_text().splitlines()
    assert lines[0] == "item_id:token"
    return set(lines[1:])


CASES = [(fmt, seed) for fmt in GENERATORS for seed in SEEDS] + [("movielens", 2)]


@pytest.mark.parametrize("fmt, seed", CASES)
def test_every_id_is_in_the_vocabulary_and_every_model_trains(fmt, seed, tmp_path):
    from bench.data import load_splits, make_config
    from bench.registry import resolve_model
    from bench.runner import run_once

    folder = _converted(fmt, seed, tmp_path)
    catalogue = _catalogue(folder)
    histories: dict[str, set[str]] = {}
    for split in ("train", "valid", "test"):
        for uid, history, target in read_rows(folder / f"edge.{split}.inter"):
            assert set(history) | {target} <= catalogue, (split, uid)
            histories.setdefault(uid, set()).update(history + [target])
    negatives = folder / "edge.negatives"
    if negatives.exists():
        for line in negatives.read_text().splitlines()[1:]:
            user, items = line.split("\t")
            drawn = set(items.split(" "))
            unseen = catalogue - histories[user]
            assert len(drawn) == len(items.split(" ")) == min(100, len(unseen))
            assert drawn <= catalogue and not drawn & histories[user], user

    # RecBole's vocabulary is the catalogue: every token maps, none is added.
    config = make_config(resolve_model("pop"), "edge", {"device": "cpu", "use_gpu": False}, folder.parent)
    splits = load_splits(config, folder.parent)
    assert splits.dataset.num("item_id") == len(catalogue) + 1  # + RecBole's padding id 0

    for model in MODELS:
        result = run_once(model, "edge", 0, tmp_path / "work" / model.replace(":", "-"),
                          {"epochs": 1, "train_batch_size": 64}, data_root=folder.parent)
        assert result.num_test_cases == len(splits.test)
        assert 0 <= result.metrics["test"]["full"]["recall@20"] <= 1


def test_short_users_stay_in_training_and_their_items_in_the_catalogue(tmp_path):
    """SASRec's split: a 2-action user trains on one row, a 1-action user on none, and
    neither is evaluated; an item only they hold is still ranked and sampled."""
    src = tmp_path / "pairs.txt"
    src.write_text("1 10\n1 11\n1 12\n1 13\n2 14\n2 10\n3 15\n")
    folder = convert("pairs", src, "edge", tmp_path / "atomic")
    assert _catalogue(folder) == {"10", "11", "12", "13", "14", "15"}
    rows = {split: read_rows(folder / f"edge.{split}.inter") for split in ("train", "valid", "test")}
    assert rows["train"] == [("1", ["10"], "11"), ("2", ["14"], "10")]
    assert rows["valid"] == [("1", ["10", "11"], "12")]
    assert rows["test"] == [("1", ["10", "11", "12"], "13")]
    user, negatives = (folder / "edge.negatives").read_text().splitlines()[1].split("\t")
    assert user == "1" and set(negatives.split(" ")) == {"14", "15"}  # every item user 1 never saw


@pytest.mark.parametrize("text", ["1 10\n1 11\n2 12\n", "1 10\n\n2 11\r\n2 12\r\n\r\n"])
def test_no_user_with_three_actions_is_one_clear_error_and_writes_nothing(text, tmp_path):
    src = tmp_path / "pairs.txt"
    src.write_bytes(text.encode())
    with pytest.raises(InputError, match="no user has at least 3 actions") as err:
        convert("pairs", src, "edge", tmp_path / "atomic")
    assert str(src) in str(err.value)
    assert not (tmp_path / "atomic" / "edge").exists()
