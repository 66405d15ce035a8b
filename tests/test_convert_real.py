"""The converters on the real published files in ../shared/data (and RecBole's embedded ml-100k)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from bench.convert import convert, recbole_ml100k_path
from bench.convert import safe_pickle
from bench.convert.inter_files import read_rows

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent")

MANIFEST_KEYS = {
    "name", "format", "protocol", "max_len", "num_items", "num_interactions", "num_sequences",
    "num_train_sequences", "num_valid_sequences", "num_test_sequences", "num_train_cases",
    "num_valid_cases", "num_test_cases", "num_test_targets_unseen_in_train", "settings", "sources", "files",
}


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def diginetica(tmp_path_factory) -> Path:
    return convert("srgnn", DATA / "diginetica", "diginetica", tmp_path_factory.mktemp("out"))


@pytest.fixture(scope="module")
def beauty(tmp_path_factory) -> Path:
    return convert("pairs", DATA / "amazon-beauty" / "Beauty.txt", "beauty", tmp_path_factory.mktemp("out"))


@needs_data
def test_diginetica_counts_match_the_published_statistics(diginetica):
    m = manifest(diginetica)
    assert set(m) == MANIFEST_KEYS | {"notes"}  # the pickles have no timestamps: the manifest says so
    assert (m["protocol"], m["format"], m["max_len"]) == ("session", "srgnn", 50)
    assert m["num_items"] == 43_097
    assert m["num_interactions"] == 982_961
    assert m["num_train_sequences"] == 186_670
    assert m["num_valid_sequences"] == 186_670 // 10
    assert m["num_test_sequences"] == 15_963
    assert m["num_test_cases"] == 60_858
    assert m["num_sequences"] == 186_670 + 15_963
    assert m["num_train_cases"] + m["num_valid_cases"] == 719_470  # the NARM paper's prefix count
    assert m["num_test_targets_unseen_in_train"] == 0


@needs_data
def test_diginetica_manifest_checksums(diginetica):
    m = manifest(diginetica)
    assert [(Path(s["path"]).name, s["sha256"][:8]) for s in m["sources"]] == [
        ("all_train_seq.txt", "55694865"), ("test.txt", "b2b81f9c")]
    assert m["sources"][0]["bytes"] == (DATA / "diginetica" / "all_train_seq.txt").stat().st_size
    assert sorted(m["files"]) == sorted(p.name for p in diginetica.iterdir() if p.name != "manifest.json")
    for name, digest in m["files"].items():
        assert hashlib.sha256((diginetica / name).read_bytes()).hexdigest() == digest


@needs_data
def test_diginetica_keeps_the_published_test_cases_in_order(diginetica):
    path = DATA / "diginetica" / "test.txt"
    prefixes, labels = safe_pickle.load(path)
    rows = read_rows(diginetica / "diginetica.test.inter")
    assert [(h, t) for _, h, t in rows] == [([str(i) for i in p[-50:]], str(y)) for p, y in zip(prefixes, labels)]
    # Rows of one session are contiguous, and session ids follow the training ones.
    ids = [int(uid) for uid, _, _ in rows]
    changes = sum(a != b for a, b in zip(ids, ids[1:]))
    assert changes + 1 == len(set(ids)) == 15_963
    assert min(ids) == 186_671 and max(ids) == 186_670 + 15_963


@needs_data
def test_diginetica_validation_is_the_last_tenth_of_training(diginetica):
    sessions = safe_pickle.load(DATA / "diginetica" / "all_train_seq.txt")
    n_valid = len(sessions) // 10
    valid = read_rows(diginetica / "diginetica.valid.inter")
    assert {int(uid) for uid, _, _ in valid} == set(range(len(sessions) - n_valid + 1, len(sessions) + 1))
    first = sessions[len(sessions) - n_valid]
    assert valid[: len(first) - 1] == [
        (str(len(sessions) - n_valid + 1), [str(i) for i in first[:k]], str(first[k])) for k in range(1, len(first))]
    with open(diginetica / "diginetica.train.inter") as f:
        assert f.readline() == "session_id:token\titem_id_list:token_seq\titem_id:token\n"
        assert f.readline() == f"1\t{sessions[0][0]}\t{sessions[0][1]}\n"


@needs_data
def test_diginetica_long_sessions_keep_their_most_recent_50_items(diginetica):
    sessions = safe_pickle.load(DATA / "diginetica" / "all_train_seq.txt")
    longest = max(range(len(sessions)), key=lambda i: len(sessions[i]))
    session, uid = sessions[longest], str(longest + 1)
    assert len(session) > 51
    with open(diginetica / "diginetica.train.inter") as f:
        last = [line for line in f if line.startswith(uid + "\t")][-1]
    assert last == f"{uid}\t{' '.join(map(str, session[-51:-1]))}\t{session[-1]}\n"


@needs_data
def test_diginetica_is_deterministic(diginetica, tmp_path):
    again = convert("srgnn", DATA / "diginetica", "diginetica", tmp_path)
    assert file_bytes(again) == file_bytes(diginetica)


@needs_data
def test_beauty_pairs_counts(beauty):
    m = manifest(beauty)
    assert set(m) == MANIFEST_KEYS
    assert (m["num_sequences"], m["num_items"], m["num_interactions"]) == (40_226, 54_542, 353_962)
    assert m["num_valid_cases"] == m["num_test_cases"] == 40_226
    assert m["num_train_cases"] == 353_962 - 3 * 40_226
    assert m["settings"] == {"max_len": 50, "num_negatives": 100, "seed": 2020}


@needs_data
def test_beauty_negatives_are_unseen_distinct_and_fixed(beauty):
    items: dict[str, set[str]] = {}
    for line in (DATA / "amazon-beauty" / "Beauty.txt").read_text().splitlines():
        user, item = line.split()
        items.setdefault(user, set()).add(item)
    catalogue = set().union(*items.values())
    lines = (beauty / "beauty.negatives").read_text().splitlines()
    assert lines[0] == "user_id:token\tneg_item_id_list:token_seq"
    assert len(lines) - 1 == 40_226
    for line in lines[1:]:
        user, negs = line.split("\t")
        negs = negs.split(" ")
        assert len(negs) == len(set(negs)) == 100
        assert not items[user] & set(negs) and set(negs) <= catalogue


@needs_data
def test_beauty_5core_user_lines_counts_and_determinism(tmp_path):
    src = DATA / "amazon-beauty-5core" / "Beauty.txt"
    first = convert("user-lines", src, "beauty5", tmp_path / "a")
    m = manifest(first)
    assert (m["num_sequences"], m["num_items"], m["num_interactions"]) == (22_363, 12_101, 198_502)
    assert m["format"] == "user-lines" and m["protocol"] == "leave-one-out"
    assert file_bytes(convert("user-lines", src, "beauty5", tmp_path / "b")) == file_bytes(first)
    assert file_bytes(convert("user-lines", src, "beauty5", tmp_path / "c", seed=7))["beauty5.negatives"] \
        != file_bytes(first)["beauty5.negatives"]


def test_recbole_ml100k_counts(tmp_path):
    folder = convert("movielens", recbole_ml100k_path(), "ml100k", tmp_path)
    m = manifest(folder)
    assert (m["num_sequences"], m["num_items"], m["num_interactions"]) == (943, 1_682, 100_000)
    assert m["max_len"] == 50 and m["sources"][0]["path"].endswith("ml-100k/ml-100k.inter")
    assert m["num_test_cases"] == m["num_valid_cases"] == 943
    assert m["num_train_cases"] == 100_000 - 3 * 943
