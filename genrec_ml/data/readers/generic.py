"""The generic format: interactions.csv|parquet + items.csv|parquet, for data we convert ourselves.

It is the format to convert any other source into, so it accepts the most: timestamps as unix
seconds or ISO-8601, an explicit position, or both.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genrec_ml.data.raw import RawDataset, interactions_frame, items_frame
from genrec_ml.data.readers.common import (
    _columns,
    _drop_duplicate_items,
    _existing_folder,
    _first_line,
    _ids,
    _new_report,
    _one_file,
    _require_columns,
    _require_order,
    _timestamps,
    _unknown,
)
from genrec_ml.data.readers.tables import _read_table
from genrec_ml.errors import GenrecDataError

GENERIC_INTERACTIONS = ["interactions.csv", "interactions.parquet"]
GENERIC_ITEMS = ["items.csv", "items.parquet"]


def read_generic(folder: Path) -> RawDataset:
    """interactions (user_id, item_id, timestamp or elapsed_s, position) and items (item_id,
    title, description, brand, categories 'a|b', attributes 'a b'); parquet files hold the same
    columns."""
    folder = _existing_folder(folder)
    report = _new_report()
    interactions_path = _one_file(folder, GENERIC_INTERACTIONS, "interactions")
    items_path = _one_file(folder, GENERIC_ITEMS, "items")
    interactions = _generic_interactions(_read_table(interactions_path, report), interactions_path)
    items = _generic_items(_read_table(items_path, report), items_path)
    items = _drop_duplicate_items(items, items_path, "item_id", report)
    return RawDataset(interactions, items, report)


def _generic_interactions(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    _require_columns(frame, path, ["user_id", "item_id"])
    time_column = next((c for c in ("timestamp", "elapsed_s") if c in frame.columns), None)
    if time_column is None and "position" not in frame.columns:
        raise GenrecDataError(
            "needs a 'timestamp' (or 'elapsed_s') column, a 'position' column or both, to order "
            f"each user's history; columns found: {_columns(frame)}",
            path=path,
            field="timestamp",
        )
    unknown = _unknown(len(frame))
    timestamp = _timestamps(frame, time_column, path) if time_column else unknown
    position = _positions(frame, "position", path) if "position" in frame.columns else unknown
    _require_order(frame, timestamp, position, path, time_column or "position")
    users, items = _ids(frame, "user_id", path), _ids(frame, "item_id", path)
    return interactions_frame(users, items, timestamp, position, path.name, frame["source_line"])


def _generic_items(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    _require_columns(frame, path, ["item_id", "title"])
    blank = pd.Series("", index=frame.index, dtype=object)
    categories = _split_names(frame.get("categories", blank), "|")
    attributes = _split_names(frame.get("attributes", blank), None)
    combined = [list(dict.fromkeys(c + a)) for c, a in zip(categories, attributes, strict=True)]
    return items_frame(
        _ids(frame, "item_id", path),
        frame["title"],
        frame.get("description", blank),
        combined,
        path.name,
        frame["source_line"],
        frame.get("brand", blank),
    )


def _split_names(column: pd.Series, separator: str | None) -> list[list[str]]:
    return [[n.strip() for n in value.split(separator) if n.strip()] for value in column]


def _positions(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """0-based order within the user; an empty cell is a missing position."""
    text = frame[column]
    given = text != ""
    number = pd.to_numeric(text.where(given), errors="coerce")
    bad = given & ~((number % 1 == 0) & (number >= 0))
    if bad.any():
        raise GenrecDataError(
            f"'{text[bad].iloc[0]}' is not a non-negative integer; positions count from 0 "
            "within each user",
            path=path,
            line=_first_line(frame, bad),
            field=column,
        )
    return number.astype("Int64")
