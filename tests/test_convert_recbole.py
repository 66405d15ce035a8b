"""RecBole 1.2.1 loads converted folders as they are, with one shared item vocabulary."""
from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import bench  # noqa: F401  (compatibility shims before recbole)
from bench.convert import convert
from bench.convert.inter_files import read_rows


def load_with_recbole(folder: Path, monkeypatch):
    from recbole.config import Config
    from recbole.data import create_dataset

    monkeypatch.setattr(sys, "argv", [sys.argv[0]])  # RecBole's Config parses the command line
    config = Config(model="GRU4Rec", dataset=folder.name, config_file_list=[str(folder / f"{folder.name}.yaml")],
                    # GRU4Rec's default CE loss needs RecBole's training negatives off (a model setting).
                    config_dict={"data_path": str(folder.parent), "show_progress": False,
                                 "train_neg_sample_args": None})
    dataset = create_dataset(config)
    return dataset, dataset.build()


def check_loaded(folder: Path, monkeypatch, uid_field: str) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    dataset, (train, valid, test) = load_with_recbole(folder, monkeypatch)
    assert (len(train), len(valid), len(test)) == (
        manifest["num_train_cases"], manifest["num_valid_cases"], manifest["num_test_cases"])
    assert dataset.uid_field == uid_field
    # One vocabulary: item_id and item_id_list share the token list (plus [PAD]).
    assert dataset.item_num == manifest["num_items"] + 1
    assert list(dataset.field2id_token["item_id_list"]) == list(dataset.field2id_token["item_id"])
    tokens = dataset.field2id_token["item_id"]
    for split, data in (("train", train), ("test", test)):
        written = read_rows(folder / f"{folder.name}.{split}.inter")
        for row in (0, len(written) - 1):
            history = data.inter_feat["item_id_list"][row]
            length = int(data.inter_feat["item_length"][row])
            assert [tokens[i] for i in history[:length].tolist()] == written[row][1]
            assert tokens[int(data.inter_feat["item_id"][row])] == written[row][2]


def test_recbole_loads_a_session_dataset(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    train = [[1, 2, 3], [4, 5], [2, 6, 7, 8], [9, 1]] * 5 + [[10, 11, 12]] * 3
    test = ([[2, 3, 4], [2, 3], [2], [5], [7, 7]], [13, 4, 3, 6, 1])
    (src / "all_train_seq.txt").write_bytes(pickle.dumps(train))
    (src / "test.txt").write_bytes(pickle.dumps(test))
    folder = convert("srgnn", src, "sessions", tmp_path / "out", max_len=3)
    check_loaded(folder, monkeypatch, "session_id")


def test_recbole_loads_a_leave_one_out_dataset(tmp_path, monkeypatch):
    src = tmp_path / "pairs.txt"
    src.write_text("".join(f"{u} {(u * 7 + k) % 40 + 1}\n" for u in range(1, 30) for k in range(2 + u % 9)))
    folder = convert("pairs", src, "users", tmp_path / "out", max_len=4)
    check_loaded(folder, monkeypatch, "user_id")


def test_yaml_names_the_recbole_settings(tmp_path):
    import yaml

    src = tmp_path / "users.txt"
    src.write_text("1 1 2 3\n2 2 3 4\n")
    folder = convert("user-lines", src, "u", tmp_path / "out", max_len=3)
    config = yaml.safe_load((folder / "u.yaml").read_text())
    assert config["USER_ID_FIELD"] == "user_id" and config["ITEM_ID_FIELD"] == "item_id"
    assert config["MAX_ITEM_LIST_LENGTH"] == 3
    assert config["load_col"] == {"inter": ["user_id", "item_id_list", "item_id"], "item": ["item_id"]}
    assert config["benchmark_filename"] == ["train", "valid", "test"]
    assert config["alias_of_item_id"] == ["item_id_list"]
    assert config["user_inter_num_interval"] == config["item_inter_num_interval"] == "[0,inf)"


def test_the_srgnn_manifest_says_session_order_stands_in_for_time_without_changing_its_identity(
        diginetica_slice):
    import json

    from bench.convert.manifest import identity
    from bench.store import dataset_manifest, file_sha256

    root, name = diginetica_slice
    manifest = json.loads((root / name / "manifest.json").read_text())
    assert any("session order stands in for time" in note for note in manifest["notes"])
    _, digest = dataset_manifest(name, root)
    without = {k: v for k, v in manifest.items() if k != "notes"}
    assert digest == identity(without) == identity(manifest)
    # a manifest without notes: the identity is the file's own sha256, as stored runs recorded it
    plain = root / "plain-manifest.json"
    plain.write_text(json.dumps(without, indent=2, sort_keys=True) + "\n")
    assert identity(without) == file_sha256(plain)
