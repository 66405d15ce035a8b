"""Bad input: one clear line naming the file (and line), a non-zero exit, no partial output."""
from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import pytest

import bench.convert as conv
from bench.convert import add_arguments, convert, main, tables
from bench.errors import InputError


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench convert")
    add_arguments(parser)
    return main(parser.parse_args(argv))


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def srgnn_folder(folder: Path, train=None, test=None) -> Path:
    """An SR-GNN folder holding the given objects (a small valid dataset by default)."""
    train = [[1, 2, 3], [2, 3], [3, 1, 2]] * 4 if train is None else train
    test = ([[1, 2], [1]], [3, 2]) if test is None else test
    write(folder / "all_train_seq.txt", train if isinstance(train, bytes) else pickle.dumps(train))
    write(folder / "test.txt", test if isinstance(test, bytes) else pickle.dumps(test))
    return folder


def error_of(fmt: str, src: Path, out: Path, **options) -> str:
    with pytest.raises(InputError) as info:
        convert(fmt, src, "bad", out, **options)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert not (out / "bad").exists()
    assert not out.exists() or not list(out.glob(".*"))  # no temporary folders left
    return message


# --- missing, empty and foreign files -------------------------------------------------

@pytest.mark.parametrize("fmt", ["pairs", "user-lines", "movielens", "diginetica-raw", "yoochoose-raw"])
def test_missing_file(fmt, tmp_path):
    options = {"fraction": 64} if fmt == "yoochoose-raw" else {}
    message = error_of(fmt, tmp_path / "nope.txt", tmp_path / "out", **options)
    assert "nope.txt" in message and "missing" in message


def test_missing_srgnn_test_file(tmp_path):
    folder = srgnn_folder(tmp_path / "sr")
    (folder / "test.txt").unlink()
    message = error_of("srgnn", folder, tmp_path / "out")
    assert message.startswith(str(folder / "test.txt")) and "missing" in message


@pytest.mark.parametrize("fmt", ["pairs", "user-lines", "movielens", "diginetica-raw"])
def test_empty_file(fmt, tmp_path):
    message = error_of(fmt, write(tmp_path / "data.txt", ""), tmp_path / "out")
    assert "data.txt" in message and "empty" in message


def test_empty_pickle(tmp_path):
    folder = srgnn_folder(tmp_path / "sr", test=b"")
    assert "empty" in error_of("srgnn", folder, tmp_path / "out")


def test_csv_given_to_pairs(tmp_path):
    path = write(tmp_path / "data.txt", "user,item\n1,2\n1,3\n")
    message = error_of("pairs", path, tmp_path / "out")
    assert message.startswith(f"{path}:1: ") and "'user,item'" in message


def test_user_lines_given_to_pairs(tmp_path):
    path = write(tmp_path / "data.txt", "1 2 3 4\n2 5 6\n")
    assert error_of("pairs", path, tmp_path / "out").startswith(f"{path}:1: ")


def test_pairs_given_to_user_lines(tmp_path):
    path = write(tmp_path / "data.txt", "1 1\n1 2\n1 3\n")
    message = error_of("user-lines", path, tmp_path / "out")
    assert message.startswith(f"{path}:2: ") and "pairs" in message


def test_pickle_given_to_pairs(tmp_path):
    path = write(tmp_path / "data.txt", pickle.dumps([[1, 2], [3]]))
    assert error_of("pairs", path, tmp_path / "out").startswith(f"{path}:1: ")


def test_text_given_to_srgnn(tmp_path):
    folder = srgnn_folder(tmp_path / "sr", train=b"1 2\n1 3\n")
    assert "not a valid pickle" in error_of("srgnn", folder, tmp_path / "out")


@pytest.mark.parametrize("name, text", [
    ("tags.csv", "userId,movieId,tag,timestamp\n1,2,funny,100\n"),  # another MovieLens file of four columns
    ("movies.csv", "movieId,title,genres\n1,Toy Story (1995),Animation\n"),
])
def test_other_movielens_file(name, text, tmp_path):
    path = write(tmp_path / name, text)
    assert error_of("movielens", path, tmp_path / "out").startswith(f"{path}:1: ")


def test_movielens_csv_bad_line_is_named(tmp_path):
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,100\n1,x,4.0,101\n")
    assert error_of("movielens", path, tmp_path / "out").startswith(f"{path}:3: ")


def test_diginetica_header_checked(tmp_path):
    path = write(tmp_path / "train-item-views.csv", "session,item\n1,2\n")
    message = error_of("diginetica-raw", path, tmp_path / "out")
    assert message.startswith(f"{path}:1: ") and "sessionId" in message


# --- bad values, with their line numbers ----------------------------------------------

@pytest.mark.parametrize("fmt, text, line", [
    ("pairs", "1 1\n1 2\n1 x7\n2 3\n", 3),
    ("pairs", "1 1\n1 2\n1 2.5\n", 3),
    ("pairs", "1 1\n1 2\n1\n", 3),
    ("pairs", "1 1\n1 2 3\n", 2),
    ("movielens", "1\t2\t3\t100\n1\t3\t3\t101\t9\n", 2),
    ("movielens", "1\t2\t3\t100\n1\t3\t3\n", 2),
    ("diginetica-raw", "sessionId;userId;itemId;timeframe;eventdate\n1;;2;10;2016-05-01\n1;;3;11;2016-05-01;x\n", 3),
    ("yoochoose-raw", "1,2014-04-07T10:51:09.277Z,5,0\n1,2014-04-07T10:52:09.277Z,6,0,7\n", 2),
    ("user-lines", "1 1 2 3\n2 4 five 6\n", 2),
    ("movielens", "1\t2\t3\t100\n1\t3\t4\t101\n1\tabc\t4\t102\n", 3),
    ("movielens", "1::2::3::100\nuser::3::4::101\n", 2),
    ("movielens", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t1\n1\t3\t3\tnow\n", 3),
    ("diginetica-raw", "sessionId;userId;itemId;timeframe;eventdate\n1;;2;10;2016-05-01\n1;;x;11;2016-05-01\n", 3),
    ("diginetica-raw", "sessionId;userId;itemId;timeframe;eventdate\n1;;2;10;2016-05-01\n1;;3;11;yesterday\n", 3),
    ("yoochoose-raw", "1,2014-04-07T10:51:09.277Z,5,0\n1,2014-04-07T10:52:09.277Z,6,0\n2,soon,5,0\n", 3),
    ("yoochoose-raw", "1,2014-04-07T10:51:09.277Z,5,0\n1,2014-04-07T10:52:09.277Z,,0\n", 2),
])
@pytest.mark.parametrize("parser", ["pyarrow", "pandas"])
def test_bad_value_names_the_line(fmt, text, line, parser, tmp_path, monkeypatch):
    if parser == "pandas":
        monkeypatch.setattr(tables, "_pyarrow", lambda: None)
    path = write(tmp_path / "data.txt", text)
    options = {"fraction": 4} if fmt == "yoochoose-raw" else {}
    assert error_of(fmt, path, tmp_path / "out", **options).startswith(f"{path}:{line}: ")


# --- pickles --------------------------------------------------------------------------

def test_truncated_pickle(tmp_path):
    good = pickle.dumps([[1, 2, 3]] * 50)
    folder = srgnn_folder(tmp_path / "sr", train=good[: len(good) // 2])
    message = error_of("srgnn", folder, tmp_path / "out")
    assert message.startswith(str(folder / "all_train_seq.txt")) and "not a valid pickle" in message


@pytest.mark.parametrize("train, test, words", [
    ({"a": [1, 2]}, None, "got a dict"),
    ([[1, 2], "3 4"], None, "is a str"),
    ([[1, 2.5]], None, "holds a float"),
    ([[1, True]], None, "holds a bool"),
    ([[1, 2], []], None, "is empty"),
    ([[1, 2], [2**70]], None, "64-bit"),
    (None, [[[1, 2]], [3]], "tuple"),
    (None, ([[1, 2], [1]], [3]), "2 test prefixes but 1 labels"),
    (None, ([[1, 2]], ["3"]), "is a str"),
    (None, ({1, 2}, [3, 4]), "got a set"),
])
def test_pickle_of_the_wrong_structure(train, test, words, tmp_path):
    folder = srgnn_folder(tmp_path / "sr", train=train, test=test)
    assert words in error_of("srgnn", folder, tmp_path / "out")


class _CreatesAFile:
    """Unpickling this with the stock unpickler calls ``open(path, 'w')``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_pickle_runs_nothing(tmp_path):
    # Control: the payload really does create a file when loaded the unsafe way.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_CreatesAFile(control))).close()
    assert control.exists()

    marker = tmp_path / "pwned"
    folder = srgnn_folder(tmp_path / "sr", train=pickle.dumps([[1, 2], [_CreatesAFile(marker), 3]]))
    message = error_of("srgnn", folder, tmp_path / "out")
    assert not marker.exists()
    assert "refused" in message and ".open" in message


# --- options and names ----------------------------------------------------------------

@pytest.mark.parametrize("fmt, options, words", [
    ("srgnn", {"fraction": 64}, "--fraction"),
    ("srgnn", {"seed": 3}, "--seed"),
    ("srgnn", {"max_len": 0}, "--max-len"),
    ("nope", {}, "unknown format"),
])
def test_bad_options(fmt, options, words, tmp_path):
    assert words in error_of(fmt, srgnn_folder(tmp_path / "sr"), tmp_path / "out", **options)


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden", "ml-100k"])
def test_bad_names(name, tmp_path):
    with pytest.raises(InputError):
        convert("srgnn", srgnn_folder(tmp_path / "sr"), name, tmp_path / "out")
    assert not (tmp_path / "escape").exists()


# --- the CLI entry point --------------------------------------------------------------

def test_main_prints_one_line_and_fails(tmp_path, capsys):
    path = write(tmp_path / "data.txt", "1 1\n1 oops\n")
    assert cli(["pairs", str(path), "--name", "bad", "--out", str(tmp_path / "out")]) != 0
    captured = capsys.readouterr()
    assert captured.err == f"bench convert: error: {path}:2: item is not an integer id: 'oops'\n"
    assert captured.out == ""


def test_main_succeeds(tmp_path, capsys):
    folder = srgnn_folder(tmp_path / "sr")
    assert cli(["srgnn", str(folder), "--name", "ok", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "ok" / "manifest.json").is_file()
    assert capsys.readouterr().out.count("\n") == 1


# --- no partial output ----------------------------------------------------------------

def test_failed_reconversion_keeps_the_previous_output(tmp_path):
    out = tmp_path / "out"
    good = convert("srgnn", srgnn_folder(tmp_path / "sr"), "data", out)
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    bad = srgnn_folder(tmp_path / "bad", test=b"\x80\x04garbage")
    with pytest.raises(InputError):
        convert("srgnn", bad, "data", out)
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["data"]


def test_failure_while_writing_removes_the_temporary_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    convert("srgnn", srgnn_folder(tmp_path / "sr"), "data", out)
    before = sorted(os.listdir(out / "data"))

    def boom(*args, **kwargs):
        raise InputError("simulated failure after some files were written")

    monkeypatch.setattr(conv.recbole_yaml, "write", boom)
    with pytest.raises(InputError, match="simulated"):
        convert("srgnn", srgnn_folder(tmp_path / "sr"), "data", out)
    assert sorted(os.listdir(out)) == ["data"] and sorted(os.listdir(out / "data")) == before
    with pytest.raises(InputError, match="simulated"):
        convert("srgnn", srgnn_folder(tmp_path / "sr"), "fresh", out)
    assert sorted(os.listdir(out)) == ["data"]


def test_successful_reconversion_replaces_the_output(tmp_path):
    out = tmp_path / "out"
    convert("srgnn", srgnn_folder(tmp_path / "sr"), "data", out)
    (out / "data" / "stale.txt").write_text("from an older converter")
    convert("srgnn", srgnn_folder(tmp_path / "sr2", train=[[4, 5]] * 10), "data", out)
    assert not (out / "data" / "stale.txt").exists()
    assert sorted(os.listdir(out)) == ["data"]
