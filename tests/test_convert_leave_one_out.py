"""Leave-one-out converters (pairs, user-lines, movielens): rows, ordering, truncation, negatives."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.convert import convert, negatives
from bench.convert.inter_files import read_rows
from bench.convert.sequences import Sequences


def rows(folder: Path, split: str) -> list[tuple[str, list[str], str]]:
    return read_rows(folder / f"{folder.name}.{split}.inter")


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def negatives_of(folder: Path) -> dict[str, list[str]]:
    lines = (folder / f"{folder.name}.negatives").read_text().splitlines()[1:]
    return {user: negs.split(" ") for user, negs in (line.split("\t") for line in lines)}


@pytest.fixture
def small(tmp_path) -> Path:
    src = tmp_path / "users.txt"
    src.write_text("1 10 11 12 13\n2 20 21\n3 30\n4 40 41 42\n")
    return convert("user-lines", src, "small", tmp_path / "out", max_len=2)


def test_last_item_is_test_second_last_is_valid(small):
    assert rows(small, "train") == [("1", ["10"], "11"), ("2", ["20"], "21")]
    assert rows(small, "valid") == [("1", ["10", "11"], "12"), ("4", ["40"], "41")]
    # The test history keeps the most recent max_len = 2 items.
    assert rows(small, "test") == [("1", ["11", "12"], "13"), ("4", ["40", "41"], "42")]


def test_counts(small):
    m = manifest(small)
    assert m["protocol"] == "leave-one-out" and m["max_len"] == 2
    assert (m["num_sequences"], m["num_items"], m["num_interactions"]) == (4, 10, 10)
    assert (m["num_train_sequences"], m["num_valid_sequences"], m["num_test_sequences"]) == (3, 2, 2)
    assert (m["num_train_cases"], m["num_valid_cases"], m["num_test_cases"]) == (2, 2, 2)
    assert m["num_test_targets_unseen_in_train"] == 2  # 13 and 42 occur nowhere else


def test_negatives_cover_the_whole_complement_when_the_catalogue_is_small(small):
    catalogue = {"10", "11", "12", "13", "20", "21", "30", "40", "41", "42"}
    negs = negatives_of(small)
    assert list(negs) == ["1", "4"]  # users with a test case only
    assert sorted(negs["1"]) == sorted(catalogue - {"10", "11", "12", "13"})
    assert sorted(negs["4"]) == sorted(catalogue - {"40", "41", "42"})


def test_pairs_group_users_in_order_of_first_appearance(tmp_path):
    src = tmp_path / "pairs.txt"
    src.write_text("2 5\n1 7\n2 6\n1 8\n2 9\n1 3\n")
    folder = convert("pairs", src, "p", tmp_path / "out")
    assert rows(folder, "test") == [("2", ["5", "6"], "9"), ("1", ["7", "8"], "3")]
    assert rows(folder, "valid") == [("2", ["5"], "6"), ("1", ["7"], "8")]


MOVIELENS = {
    "ratings.dat": "1::10::5::300\n1::11::3::100\n1::12::4::100\n1::13::4::50\n2::10::1::10\n2::14::2::20\n",
    "ratings.csv": "userId,movieId,rating,timestamp\n"
                   "1,10,5.0,300\n1,11,3.5,100\n1,12,4.0,100\n1,13,4.0,50\n2,10,1.0,10\n2,14,2.5,20\n",
    "u.data": "1\t10\t5\t300\n1\t11\t3\t100\n1\t12\t4\t100\n1\t13\t4\t50\n2\t10\t1\t10\n2\t14\t2\t20\n",
    "small.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                   "1\t10\t5\t300\n1\t11\t3\t100\n1\t12\t4\t100\n1\t13\t4\t50\n2\t10\t1\t10\n2\t14\t2\t20\n",
}


@pytest.mark.parametrize("file_name", list(MOVIELENS))
def test_movielens_orders_by_timestamp_ties_in_file_order(file_name, tmp_path):
    folder_src = tmp_path / "small"
    folder_src.mkdir()
    (folder_src / file_name).write_text(MOVIELENS[file_name])
    folder = convert("movielens", folder_src, "ml", tmp_path / "out")
    # User 2 rated first (t=10), so it comes first; user 1: 13 (50), 11 and 12 (both 100), 10 (300).
    assert rows(folder, "train") == [("2", ["10"], "14"), ("1", ["13"], "11")]
    assert rows(folder, "test") == [("1", ["13", "11", "12"], "10")]
    expected_len = 200 if file_name in ("ratings.dat", "ratings.csv") else 50
    assert manifest(folder)["max_len"] == expected_len
    assert f"MAX_ITEM_LIST_LENGTH: {expected_len}" in (folder / "ml.yaml").read_text()
    assert manifest(folder)["sources"][0]["path"].endswith(file_name)


def test_movielens_max_len_option_wins(tmp_path):
    src = tmp_path / "ratings.dat"
    src.write_text(MOVIELENS["ratings.dat"])
    assert manifest(convert("movielens", src, "ml", tmp_path / "out", max_len=1))["max_len"] == 1
    assert rows(tmp_path / "out" / "ml", "test") == [("1", ["12"], "10")]


def test_negative_sampling_is_uniform_unseen_and_seeded():
    rng = np.random.default_rng(0)
    lists = [list(rng.choice(np.arange(1, 301), size=int(n), replace=False)) for n in rng.integers(3, 250, 60)]
    seqs = Sequences.from_lists(lists)
    rows_ = np.arange(len(lists))
    first = negatives.sample(seqs, rows_, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(first, negatives.sample(seqs, rows_, seed=5)))
    assert not all(np.array_equal(a, b) for a, b in zip(first, negatives.sample(seqs, rows_, seed=6)))
    catalogue = set(seqs.items.tolist())
    for seen, negs in zip(lists, first):
        want = min(100, len(catalogue) - len(seen))  # dense users: short blocks fall back to exact draws
        assert len(negs) == len(set(negs.tolist())) == want
        assert not set(negs.tolist()) & set(seen) and set(negs.tolist()) <= catalogue
