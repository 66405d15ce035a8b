"""The NARM / SR-GNN preprocessing rules of the raw Diginetica and Yoochoose converters.

There is no real raw file here, so every test writes a small click log in the
published format and checks one rule on the converted sessions. The rules are SR-GNN's
``datasets/preprocess.py`` as it runs, quirks included (checked outside the tests on
the sample file its repository ships and on generated Yoochoose logs: the same
sessions, prefixes and order as its pickles).
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

    def write(self, fmt: str, folder: Path, header: str = "sessionId;userId;itemId;timeframe;eventdate") -> Path:
        if fmt == "diginetica-raw":
            path = folder / "train-item-views.csv"
            lines = [header]
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


@pytest.mark.parametrize("fmt, expected", [("diginetica-raw", [1, 2, 4, 3]), ("yoochoose-raw", [3, 1, 2, 4])])
def test_diginetica_clicks_are_ordered_by_timeframe_yoochoose_clicks_stay_in_file_order(fmt, expected, tmp_path):
    # SR-GNN's script sorts Diginetica's clicks by timeframe (stable: ties in file order)
    # and leaves Yoochoose's as listed
    clicks = Clicks()
    clicks.rows += [(100, 3, DAY + 9), (100, 1, DAY + 5), (100, 2, DAY + 7), (100, 4, DAY + 7)]
    with_test_period(clicks)
    train = sessions(run(clicks, fmt, tmp_path), "train") + sessions(tmp_path / "out" / "raw", "valid")
    assert expected in train


def test_diginetica_header_may_name_columns_in_snake_case(tmp_path):
    """``session_id;user_id;item_id;timeframe;eventdate``: the header SR-GNN's script reads."""
    clicks = Clicks()
    clicks.session(100, [1, 2, 3], day=1)
    with_test_period(clicks)
    for name, header in [("camel", "sessionId;userId;itemId;timeframe;eventdate"),
                         ("snake", "session_id;user_id;item_id;timeframe;eventdate")]:
        (tmp_path / name).mkdir()
        clicks.write("diginetica-raw", tmp_path / name, header=header)
        convert("diginetica-raw", tmp_path / name, name, tmp_path / "out")
    for split in ("train", "valid", "test"):
        assert sessions(tmp_path / "out" / "snake", split) == sessions(tmp_path / "out" / "camel", split)
    assert [1, 2, 3] in sessions(tmp_path / "out" / "snake", "train") + sessions(tmp_path / "out" / "snake", "valid")


def test_yoochoose_header_line_is_skipped(tmp_path):
    """SR-GNN's script needs ``session_id,timestamp,item_id,category`` on top of the file, so
    its users' copies carry that line; the published file has none."""
    clicks = Clicks()
    clicks.session(100, [1, 2, 3], day=1)
    with_test_period(clicks)
    (tmp_path / "plain").mkdir()
    (tmp_path / "headed").mkdir()
    plain = clicks.write("yoochoose-raw", tmp_path / "plain")
    (tmp_path / "headed" / plain.name).write_text("session_id,timestamp,item_id,category\n" + plain.read_text())
    for name in ("plain", "headed"):
        convert("yoochoose-raw", tmp_path / name, name, tmp_path / "out", fraction=4)
    for split in ("train", "valid", "test"):
        assert sessions(tmp_path / "out" / "headed", split) == sessions(tmp_path / "out" / "plain", split)


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
    clicks.session(129, [9, 10], day=12)  # before max_date - 7 days: training
    clicks.session(130, [11, 12], day=13)  # exactly max_date - 7 days: neither (SR-GNN's < and >)
    clicks.session(131, [13, 14], day=14)  # within the last 7 days: test
    clicks.rows += [(132, 15, 12 * DAY), (132, 16, 14 * DAY)]  # dated by its last line, day 14: test
    clicks.rows += [(133, 18, 14 * DAY), (133, 17, 12 * DAY)]  # last line on day 12: training
    folder = run(clicks, "diginetica-raw", tmp_path)
    train = sessions(folder, "train") + sessions(folder, "valid")
    test = sessions(folder, "test")
    assert [9, 10] in train and [13, 14] in test and [15, 16] in test and [17, 18] in train
    assert [13, 14] not in train and [15, 16] not in train and [17, 18] not in test
    assert [11, 12] not in train + test


def test_yoochoose_test_period_is_the_last_day(tmp_path):
    clicks = Clicks()
    end = 20 * DAY + 3600
    clicks.rows += [(8001, 1, end - 10), (8001, 2, end)]  # the latest click in the file
    clicks.rows += [(139, 9, end - DAY - 5), (139, 10, end - DAY - 1)]  # before the last day: training
    clicks.rows += [(140, 11, end - DAY - 5), (140, 12, end - DAY)]  # exactly a day before: neither
    clicks.rows += [(141, 13, end - DAY - 5), (141, 14, end - DAY + 1)]  # within the last day: test
    clicks.rows += [(142, 15, end - DAY - 4000), (142, 16, end - 100)]  # dated by its last click
    folder = run(clicks, "yoochoose-raw", tmp_path)
    train = sessions(folder, "train") + sessions(folder, "valid")
    test = sessions(folder, "test")
    assert [9, 10] in train and [13, 14] in test and [15, 16] in test
    assert [11, 12] not in train + test


def test_yoochoose_dates_are_whole_seconds(tmp_path):
    """SR-GNN parses ``timestamp[:19]``: milliseconds never date or order a session."""
    clicks = Clicks()
    with_test_period(clicks)
    path = clicks.write("yoochoose-raw", tmp_path)
    end = YOO_EPOCH + timedelta(seconds=20 * DAY + 1)  # the latest click: the test sessions' second
    stamp = lambda t, ms: (t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms:03d}Z")  # noqa: E731
    day_before = end - timedelta(days=1)
    lines = [f"150,{stamp(day_before, 0)},11,0", f"150,{stamp(day_before, 400)},12,0",  # the split second: neither
             f"160,{stamp(day_before - timedelta(seconds=9), 0)},13,0",  # two sessions ending in one second:
             f"160,{stamp(day_before - timedelta(seconds=5), 900)},14,0",  # ordered by id, not milliseconds
             f"161,{stamp(day_before - timedelta(seconds=9), 0)},15,0",
             f"161,{stamp(day_before - timedelta(seconds=5), 100)},16,0"]
    path.write_text(path.read_text() + "\n".join(lines) + "\n")
    folder = convert("yoochoose-raw", tmp_path, "raw", tmp_path / "out", fraction=4)
    train = sessions(folder, "train") + sessions(folder, "valid")
    assert [11, 12] not in train + sessions(folder, "test")
    assert train[-2:] == [[13, 14], [15, 16]]


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
    """Sessions of two clicks: one prefix row each, so 1/fraction of the rows is of the sessions."""
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
    # one test set for every fraction, as SR-GNN's: items 1 and 2 are in training sessions,
    # though not in the kept 1/64 of them
    assert sessions(folder, "test") == [[POOL[0], POOL[1]], [POOL[6], POOL[7], POOL[8]]]


def test_yoochoose_fraction_counts_prefix_rows_and_keeps_whole_sessions(tmp_path):
    clicks = Clicks(fillers=0)
    for k in range(30):  # one prefix row each
        clicks.session(1000 + k, [1, 2], day=1, start=60 * k)
    for k in range(10):  # twelve prefix rows each
        clicks.session(2000 + k, [1, 2, 3] * 4 + [1], day=2, start=60 * k)
    with_test_period(clicks)
    folder = run(clicks, "yoochoose-raw", tmp_path, fraction=4)
    # 30 + 120 = 150 rows; the newest floor(150 / 4) = 37 start at row 113, the last row of
    # long session 7 of 10 (rows 102-113): sessions 7-10 are kept whole, not 150 // 4 sessions
    train = sessions(folder, "train") + sessions(folder, "valid")
    assert train == [[1, 2, 3] * 4 + [1]] * 4


def test_yoochoose_needs_a_fraction(tmp_path):
    from bench.errors import InputError

    clicks = Clicks()
    with_test_period(clicks)
    (tmp_path / "src").mkdir()
    clicks.write("yoochoose-raw", tmp_path / "src")
    with pytest.raises(InputError, match="--fraction"):
        convert("yoochoose-raw", tmp_path / "src", "raw", tmp_path / "out")
