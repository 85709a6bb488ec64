"""MicroLens: *_pairs.csv (timestamped) or *_pairs.tsv (ordered histories) + *_titles.csv.

Item categories are the hashtags in each title, since *_titles.csv has no category column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genrec_ml.data.raw import RawDataset, interactions_frame, items_frame
from genrec_ml.data.readers.common import (
    _drop_duplicate_items,
    _existing_folder,
    _file_names,
    _first_line,
    _ids,
    _matching,
    _new_report,
    _one_file,
    _require_columns,
    _require_order,
    _timestamps,
    _unknown,
)
from genrec_ml.data.readers.tables import _read_delimited, _read_table
from genrec_ml.errors import GenrecDataError

MICROLENS_PAIRS_CSV = ["*_pairs.csv"]
MICROLENS_PAIRS_TSV = ["*_pairs.tsv"]
MICROLENS_TITLES = ["*_titles.csv"]
_MILLISECONDS_ABOVE = 10**11  # as seconds this would be the year 5138, so it must be milliseconds


def read_microlens(folder: Path) -> RawDataset:
    """MicroLens: histories from *_pairs.csv (with timestamps) when present, else *_pairs.tsv."""
    folder = _existing_folder(folder)
    report = _new_report()
    if _matching(_file_names(folder), MICROLENS_PAIRS_CSV):
        pairs_path = _one_file(folder, MICROLENS_PAIRS_CSV, "pairs")
        interactions = _microlens_pairs_csv(_read_table(pairs_path, report), pairs_path)
    else:
        pairs_path = _one_file(folder, MICROLENS_PAIRS_TSV, "pairs")
        interactions = _microlens_pairs_tsv(pairs_path, report)
    titles_path = _one_file(folder, MICROLENS_TITLES, "titles")
    items = _microlens_titles(_read_table(titles_path, report), titles_path)
    items = _drop_duplicate_items(items, titles_path, "item", report)
    return RawDataset(interactions, items, report)


def _microlens_pairs_tsv(path: Path, report: dict[str, int]) -> pd.DataFrame:
    """`user<TAB>item item ...` in chronological order: position is the index in the line."""
    frame = _read_delimited(path, report, delimiter="\t", names=["user_id", "items"])
    users = _ids(frame, "user_id", path)
    item_lists = frame["items"].str.split()
    empty = item_lists.str.len() == 0
    if empty.any():
        raise GenrecDataError(
            "has no item ids after the user id; list the items separated by spaces",
            path=path,
            line=_first_line(frame, empty),
            field="items",
        )
    items = item_lists.explode()  # keeps the row's index on each of its items
    position = items.groupby(level=0).cumcount()
    lines = frame["source_line"].loc[items.index]
    return interactions_frame(
        users.loc[items.index], items, _unknown(len(items)), position, path.name, lines
    )


def _microlens_pairs_csv(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    _require_columns(frame, path, ["userID", "videoID", "timestamp"])
    seconds = _timestamps(frame, "timestamp", path)
    in_ms = (seconds > _MILLISECONDS_ABOVE).fillna(False)
    seconds[in_ms] = seconds[in_ms] // 1000
    unknown = _unknown(len(frame))
    _require_order(frame, seconds, unknown, path, "timestamp")
    users, items = _ids(frame, "userID", path), _ids(frame, "videoID", path)
    return interactions_frame(users, items, seconds, unknown, path.name, frame["source_line"])


def _microlens_titles(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Titles keep their hashtags; the hashtags are also the item's categories."""
    _require_columns(frame, path, ["item", "title"])
    return items_frame(
        _ids(frame, "item", path),
        frame["title"],
        [""] * len(frame),
        [_hashtags(title) for title in frame["title"]],
        path.name,
        frame["source_line"],
    )


def _hashtags(title: str) -> list[str]:
    """'dish # comic # Two Yuan' -> ['comic', 'Two Yuan']; a tag runs to the next '#'."""
    tags = (tag.strip() for tag in title.split("#")[1:])
    return list(dict.fromkeys(tag for tag in tags if tag))
