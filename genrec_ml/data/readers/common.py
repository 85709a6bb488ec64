"""What every reader shares: finding its files, the report, the errors and the column checks.

The names keep their leading underscore: they are private to the readers package, not part of
what `genrec_ml.data.readers` exports. Checks run on whole columns and name the first bad line.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import pandas as pd

from genrec_ml.errors import GenrecDataError

_EPOCH = pd.Timestamp(0, tz="UTC")


# --- files: the folder and the files each format expects ------------------------------------------


def _existing_folder(folder: Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise GenrecDataError(
            "is not a folder; point at the folder holding the dataset files", path=folder
        )
    return folder


def _file_names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.is_file())


def _matching(names: list[str], patterns: list[str], exclude: list[str] = ()) -> list[str]:
    def matches(name, globs):
        return any(fnmatchcase(name, glob) for glob in globs)

    return [name for name in names if matches(name, patterns) and not matches(name, exclude)]


def _one_file(folder: Path, patterns: list[str], what: str, exclude: list[str] = ()) -> Path:
    names = _file_names(folder)
    found = _matching(names, patterns, exclude)
    if not found:
        raise GenrecDataError(
            f"no {what} file: expected a file named {' or '.join(patterns)}; "
            f"found {_listing(names)}",
            path=folder,
        )
    if len(found) > 1:
        raise GenrecDataError(
            f"several {what} files ({', '.join(found)}); keep exactly one in the folder",
            path=folder,
        )
    return folder / found[0]


def _listing(names: list[str], shown: int = 20) -> str:
    if not names:
        return "no files"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


# --- errors and checks ----------------------------------------------------------------------------


def _not_utf8(error: UnicodeDecodeError, path: Path, line: int) -> GenrecDataError:
    return GenrecDataError(
        f"byte {error.start + 1} of the line is not valid UTF-8; re-save the file as UTF-8",
        path=path,
        line=line,
    )


def _require_bytes(path: Path) -> None:
    if path.stat().st_size == 0:
        raise GenrecDataError(
            "is empty (0 bytes); the export or download failed: redo it", path=path
        )


def _require_columns(frame: pd.DataFrame, path: Path, required: list[str]) -> None:
    for name in required:
        if name not in frame.columns:
            raise GenrecDataError(
                f"required column '{name}' is missing; columns found: {_columns(frame)}. "
                "Rename or add the column",
                path=path,
                field=name,
            )


def _ids(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    values = frame[column]
    empty = values == ""
    if empty.any():
        raise GenrecDataError(
            "is empty; every row needs one (fill it in or delete the row)",
            path=path,
            line=_first_line(frame, empty),
            field=column,
        )
    return values


def _timestamps(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """Unix seconds from integers or ISO-8601 text (naive means UTC); an empty cell is missing."""
    text = frame[column]
    given = text != ""
    seconds = pd.to_numeric(text.where(given), errors="coerce").astype(float)
    dated = given & seconds.isna()
    if dated.any():
        moments = pd.to_datetime(text[dated], format="ISO8601", utc=True, errors="coerce")
        seconds[dated] = (moments - _EPOCH) // pd.Timedelta(seconds=1)
    bad = given & ~np.isfinite(seconds)
    if bad.any():
        raise GenrecDataError(
            f"'{text[bad].iloc[0]}' is neither unix seconds nor an ISO-8601 time such as "
            "2014-01-31T12:00:00Z; fix it or leave it empty",
            path=path,
            line=_first_line(frame, bad),
            field=column,
        )
    return np.floor(seconds).astype("Int64")


def _require_order(
    frame, timestamp: pd.Series, position: pd.Series, path: Path, field: str
) -> None:
    neither = timestamp.isna() & position.isna()
    if neither.any():
        raise GenrecDataError(
            "has neither a timestamp nor a position, so its place in the user's history is "
            "unknown; fill one in",
            path=path,
            line=_first_line(frame, neither),
            field=field,
        )


def _drop_duplicate_items(
    items: pd.DataFrame, path: Path, id_field: str, report: dict[str, int]
) -> pd.DataFrame:
    """Identical repeats are dropped and counted; an id with two different rows is an error.

    id_field is the id's name in the source file, for the message.
    """
    content = items[["item_id", "title", "description", "brand"]].assign(
        categories=items["categories"].map("\x1f".join)
    )
    identical = content.duplicated()
    report["duplicate_item_rows_dropped"] += int(identical.sum())
    items = items[~identical].reset_index(drop=True)
    repeated = items["item_id"].duplicated()
    if repeated.any():
        second = items[repeated].iloc[0]
        first_line = items.loc[items["item_id"] == second["item_id"], "source_line"].iloc[0]
        raise GenrecDataError(
            f"item '{second['item_id']}' appears again with a different title, description, "
            f"categories or brand (first at line {first_line}); keep one row per item",
            path=path,
            line=int(second["source_line"]),
            field=id_field,
        )
    return items


# --- small helpers --------------------------------------------------------------------------------


def _new_report() -> dict[str, int]:
    return {"blank_lines_skipped": 0, "duplicate_item_rows_dropped": 0}


def _unknown(n: int) -> pd.Series:
    return pd.Series(pd.array([None] * n, dtype="Int64"))


def _first_line(frame: pd.DataFrame, mask: pd.Series) -> int:
    return int(frame["source_line"][mask].iloc[0])


def _columns(frame: pd.DataFrame) -> list[str]:
    return [name for name in frame.columns if name != "source_line"]
