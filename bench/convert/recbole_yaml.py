"""The RecBole 1.2.1 dataset config written next to the atomic files.

With ``data_path`` pointing at the output root and ``dataset`` at NAME, RecBole
loads the folder as it is. ``alias_of_item_id`` makes ``item_id_list`` share the
``item_id`` vocabulary (without it RecBole silently builds a second one), and
``benchmark_filename`` makes RecBole take our train/valid/test split and skip its
own filtering; the filters are also switched off explicitly.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from bench.convert.inter_files import ITEM_FIELD, ITEM_LIST_FIELD
from bench.convert.protocols import SPLITS, UID_FIELD


def config(protocol: str, max_len: int) -> dict:
    uid = UID_FIELD[protocol]
    return {
        "field_separator": "\t",
        "seq_separator": " ",
        "USER_ID_FIELD": uid,
        "ITEM_ID_FIELD": ITEM_FIELD,
        "RATING_FIELD": None,
        "TIME_FIELD": None,
        "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": "item_length",
        "MAX_ITEM_LIST_LENGTH": max_len,
        # The item file lists the whole catalogue (see inter_files.write_items).
        "load_col": {"inter": [uid, ITEM_LIST_FIELD, ITEM_FIELD], "item": [ITEM_FIELD]},
        "benchmark_filename": list(SPLITS),
        "alias_of_item_id": [ITEM_LIST_FIELD],
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "val_interval": None,
        "rm_dup_inter": None,
        "filter_inter_by_user_or_item": False,
    }


def write(path: Path, protocol: str, max_len: int) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        yaml.safe_dump(config(protocol, max_len), f, sort_keys=True, default_flow_style=None)
