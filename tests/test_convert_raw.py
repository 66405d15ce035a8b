"""The NARM / SR-GNN preprocessing rules of the raw Diginetica and Yoochoose converters.

There is no real raw file here, so every test writes a small click log in the
published format and checks one rule on the converted sessions.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from bench.convert import convert, tables
from bench.convert.inter_files import read_rows

DAY = 86_400
FIRST_DAY = date(2016, 5, 1)
YOO_EPOCH = datetime(2014, 4, 1, tzinfo=timezone.utc)
POOL = list(range(1, 21))  # items that old filler sessions make frequent


class Clicks:
    """A click log under construction: (session, item, second) in file order."""

    def __init__(self, fillers: int = 40):
        self.rows: list[tuple[int, int, int]] = []
        # Old sessions on day 0, all with the same date: they make POOL items frequent.
        for i in range(fillers):
            self.session(9001 + i, POOL[(i % 4) * 5:(i % 4) * 5 + 5], day=0)

    def session(self, sid: int, items: list[int], day: int, start: int = 0) -> None:
        self.rows += [(sid, item, day * DAY + start + k) for k, item in enumerate(items)]

    def write(self, fmt: str, folder: Path) -> Path:
        if fmt == "diginetica-raw":
            path = folder / "train-item-views.csv"
            lines = ["sessionId;userId;itemId;timeframe;eventdate"]
            lines += [f"{s};;{i};{t};{FIRST_DAY + timedelta(days=t // DAY)}" for s, i, t in self.rows]
        else:
            path = folder / "yoochoose-clicks.dat"
            lines = [f"{s},{(YOO_EPOCH + timedelta(seconds=t)).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z,{i},0"
                     for s, i, t in self.rows]
        path.write_text("\n".join(lines) + "\n")
        return path


def sessions(folder: Path, split: str) -> list[list[int]]:
    """Every session of a split, rebuilt from its longest prefix row."""
    last: dict[str, list[int]] = {}
    for uid, history, target in read_rows(folder / f"{folder.name}.{split}.inter"):
        last[uid] = [int(x) for x in history] + [int(target)]
    return list(last.values())


def run(clicks: Clicks, fmt: str, tmp_path: Path, **options) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    clicks.write(fmt, src)
    if fmt == "yoochoose-raw":
        options.setdefault("fraction", 4)
    return convert(fmt, src, "raw", tmp_path / "out", **options)


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


RAW = ["diginetica-raw", "yoochoose-raw"]


@pytest.fixture(autouse=True, params=["pyarrow", "pandas"])
def parser(request, monkeypatch):
    """Every rule runs through both table parsers: pyarrow's (when installed) and pandas' C reader."""
    if request.param == "pandas":
        monkeypatch.setattr(tables, "_pyarrow", lambda: None)
    elif tables._pyarrow() is None:
        pytest.skip("pyarrow is not installed")


def with_test_period(clicks: Clicks, last_day: int = 20) -> None:
    """A few test sessions of frequent items on the last day."""
    for k in range(3):
        clicks.session(8001 + k, [1, 2], day=last_day)


@pytest.mark.parametrize("fmt", RAW)
def test_clicks_are_ordered_by_time_ties_in_file_order(fmt, tmp_path):
    clicks = Clicks()
    clicks.rows += [(100, 3, DAY + 9), (100, 1, DAY + 5), (100, 2, DAY + 7), (100, 4, DAY + 7)]
    with_test_period(clicks)
    train = sessions(run(clicks, fmt, tmp_path), "train") + sessions(tmp_path / "out" / "raw", "valid")
    assert [1, 2, 4, 3] in train


@pytest.mark.parametrize("fmt", RAW)
def test_length_one_sessions_are_dropped_before_counting_items(fmt, tmp_path):
    clicks = Clicks()
    clicks.session(101, [77], day=1)  # a 5th click of item 77, but in a length-1 session
    for sid in range(102, 106):
        clicks.session(sid, [1, 77], day=1)
    for sid in range(106, 111):
        clicks.session(sid, [2, 88], day=1)  # item 88: five clicks in real sessions
    with_test_period(clicks)
    folder = run(clicks, fmt, tmp_path)
    train = sessions(folder, "train") + sessions(folder, "valid")
    assert not any(77 in s for s in train)
    assert [1] not in train and train.count([2, 88]) == 5


@pytest.mark.parametrize("fmt", RAW)
def test_rare_items_are_dropped_then_short_sessions(fmt, tmp_path):
    clicks = Clicks()
    clicks.session(112, [3, 99, 4], day=1)
    clicks.session(113, [5, 98], day=1)
    with_test_period(clicks)
    folder = run(clicks, fmt, tmp_path)
    train = sessions(folder, "train") + sessions(folder, "valid")
    assert [3, 4] in train
    assert not any(98 in s or 99 in s or s == [5] for s in train)
    assert manifest(folder)["num_train_sequences"] == len(train)


@pytest.mark.parametrize("fmt", RAW)
def test_test_items_unseen_in_training_are_removed(fmt, tmp_path):
    clicks = Clicks()
    for sid in range(8101, 8106):
        clicks.session(sid, [1, 50, 2], day=20)  # 50 is frequent, but only in the test period
    clicks.session(8106, [3, 50], day=20)
    with_test_period(clicks)
    folder = run(clicks, fmt, tmp_path)
    test = sessions(folder, "test")
    assert test.count([1, 2]) == 5 + 3 and [3] not in test
    assert not any(50 in s for s in test)
    assert manifest(folder)["num_test_targets_unseen_in_train"] == 0


def test_diginetica_test_period_is_the_last_7_days(tmp_path):
    clicks = Clicks()
    with_test_period(clicks, last_day=20)
    clicks.session(130, [11, 12], day=13)  # exactly max_date - 7 days: training
    clicks.session(131, [13, 14], day=14)  # within the last 7 days: test
    clicks.rows += [(132, 15, 12 * DAY), (132, 16, 14 * DAY)]  # dated by its latest click: test
    folder = run(clicks, "diginetica-raw", tmp_path)
    train = sessions(folder, "train") + sessions(folder, "valid")
    test = sessions(folder, "test")
    assert [11, 12] in train and [13, 14] in test and [15, 16] in test
    assert [13, 14] not in train and [15, 16] not in train


def test_yoochoose_test_period_is_the_last_day(tmp_path):
    clicks = Clicks()
    end = 20 * DAY + 3600
    clicks.rows += [(8001, 1, end - 10), (8001, 2, end)]  # the latest click in the file
    clicks.rows += [(140, 11, end - DAY - 5), (140, 12, end - DAY)]  # exactly a day before: training
    clicks.rows += [(141, 13, end - DAY - 5), (141, 14, end - DAY + 1)]  # within the last day: test
    clicks.rows += [(142, 15, end - DAY - 4000), (142, 16, end - 100)]  # dated by its latest click
    folder = run(clicks, "yoochoose-raw", tmp_path)
    train = sessions(folder, "train") + sessions(folder, "valid")
    test = sessions(folder, "test")
    assert [11, 12] in train and [13, 14] in test and [15, 16] in test


@pytest.mark.parametrize("fmt", RAW)
def test_sessions_are_sorted_by_date_then_id_and_validation_is_the_latest_tenth(fmt, tmp_path):
    clicks = Clicks(fillers=0)
    # 20 training sessions; ids run against dates, and days 1..10 each hold two sessions.
    for k in range(20):
        sid, day = 500 - k, 10 - k // 2
        clicks.session(sid, [POOL[k % 20], POOL[(k + 7) % 20]] * 3, day=day)
    with_test_period(clicks)
    folder = run(clicks, fmt, tmp_path, **({"fraction": 4} if fmt == "yoochoose-raw" else {}))
    train, valid = sessions(folder, "train"), sessions(folder, "valid")
    expected = []
    for k in sorted(range(20), key=lambda k: (10 - k // 2, 500 - k)):
        expected.append([POOL[k % 20], POOL[(k + 7) % 20]] * 3)
    if fmt == "yoochoose-raw":
        expected = expected[-(20 // 4):]  # the most recent quarter
    assert train + valid == expected
    assert len(valid) == len(expected) // 10


@pytest.mark.parametrize("fraction", [64, 4])
def test_yoochoose_fraction_keeps_the_most_recent_training_sessions(fraction, tmp_path):
    clicks = Clicks(fillers=0)
    for k in range(128):  # session k is (k mod 20, k+1 mod 20), one minute after session k-1
        clicks.session(1000 + k, [POOL[k % 20], POOL[(k + 1) % 20]], day=1, start=60 * k)
    clicks.session(8001, [POOL[0], POOL[1]], day=20)  # seen only in old sessions for 1/64
    clicks.session(8002, [POOL[6], POOL[7], POOL[8]], day=20)  # (6,7),(7,8) are sessions 126,127
    folder = run(clicks, "yoochoose-raw", tmp_path, fraction=fraction)
    train = sessions(folder, "train") + sessions(folder, "valid")
    kept = 128 // fraction
    assert train == [[POOL[k % 20], POOL[(k + 1) % 20]] for k in range(128 - kept, 128)]
    assert manifest(folder)["num_train_sequences"] == kept
    assert manifest(folder)["settings"]["fraction"] == fraction
    test = sessions(folder, "test")
    if fraction == 64:  # items 1 and 2 occur only in old training sessions: the session vanishes
        assert test == [[POOL[6], POOL[7], POOL[8]]]
    else:
        assert test == [[POOL[0], POOL[1]], [POOL[6], POOL[7], POOL[8]]]


def test_yoochoose_needs_a_fraction(tmp_path):
    from bench.errors import InputError

    clicks = Clicks()
    with_test_period(clicks)
    (tmp_path / "src").mkdir()
    clicks.write("yoochoose-raw", tmp_path / "src")
    with pytest.raises(InputError, match="--fraction"):
        convert("yoochoose-raw", tmp_path / "src", "raw", tmp_path / "out")
