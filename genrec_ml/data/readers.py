"""Readers that turn each raw dataset format into a RawDataset.

Every bad input raises GenrecDataError naming the file, the physical line (a header is line 1) and
the field, and saying what to do. CSV and TSV files are parsed by pyarrow in one pass and validated
column-wise; only when pyarrow rejects a file do we scan it line by line to say where it broke.
"""

from __future__ import annotations

import ast
import csv
import gzip
import html
import json
import re
import zlib
from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pac
import pyarrow.csv as pacsv

from genrec_ml.data.raw import RawDataset, interactions_frame, items_frame
from genrec_ml.errors import GenrecDataError

GENERIC_INTERACTIONS = ["interactions.csv", "interactions.parquet"]
GENERIC_ITEMS = ["items.csv", "items.parquet"]
AMAZON_REVIEWS = ["reviews_*.json", "reviews_*.json.gz", "*_5.json", "*_5.json.gz"]
AMAZON_META = ["meta_*.json", "meta_*.json.gz"]
MICROLENS_PAIRS_CSV = ["*_pairs.csv"]
MICROLENS_PAIRS_TSV = ["*_pairs.tsv"]
MICROLENS_TITLES = ["*_titles.csv"]

# The files whose presence identifies each format.
_SIGNATURES = {
    "generic": GENERIC_INTERACTIONS,
    "amazon": AMAZON_REVIEWS,
    "microlens": MICROLENS_PAIRS_CSV + MICROLENS_PAIRS_TSV,
}
_EPOCH = pd.Timestamp(0, tz="UTC")
_MILLISECONDS_ABOVE = 10**11  # as seconds this would be the year 5138, so it must be milliseconds
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")  # a tag starts with a letter: keeps "size < 5"
_SPACES = re.compile(r"\s+")


def detect_format(folder: Path) -> str:
    """The name in FORMATS whose signature files are in the folder."""
    folder = _existing_folder(folder)
    names = _file_names(folder)
    found = [name for name, patterns in _SIGNATURES.items() if _matching(names, patterns)]
    if len(found) == 1:
        return found[0]
    if found:
        raise GenrecDataError(
            f"holds files of several formats ({', '.join(found)}): {_listing(names)}; "
            "keep one dataset per folder",
            path=folder,
        )
    expected = "; ".join(f"{name}: {' or '.join(p)}" for name, p in _SIGNATURES.items())
    raise GenrecDataError(
        f"no known dataset format; found {_listing(names)}; expected one of: {expected}. "
        "Rename the files, or convert the data to interactions.csv + items.csv",
        path=folder,
    )


def read_dataset(folder: Path) -> RawDataset:
    """Detects the folder's format and reads it."""
    return FORMATS[detect_format(folder)](Path(folder))


# --- generic: interactions.csv|parquet + items.csv|parquet ----------------------------------------


def read_generic(folder: Path) -> RawDataset:
    """interactions (user_id, item_id, timestamp or elapsed_s, position) and items (item_id,
    title, description, categories 'a|b', attributes 'a b'); parquet files hold the same columns."""
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
    )


def _split_names(column: pd.Series, separator: str | None) -> list[list[str]]:
    return [[n.strip() for n in value.split(separator) if n.strip()] for value in column]


# --- amazon: reviews_*.json[.gz] or *_5.json[.gz] + meta_*.json[.gz] ------------------------------


def read_amazon(folder: Path) -> RawDataset:
    """Amazon Product Reviews dumps, 2014 (python literals) or 2018 (JSON), one record a line."""
    folder = _existing_folder(folder)
    report = _new_report()
    reviews_path = _one_file(folder, AMAZON_REVIEWS, "reviews", exclude=AMAZON_META)
    meta_path = _one_file(folder, AMAZON_META, "metadata")
    interactions = _amazon_reviews(reviews_path, report)
    items = _amazon_meta(meta_path, report)
    return RawDataset(interactions, _drop_duplicate_items(items, meta_path, "asin", report), report)


def _amazon_reviews(path: Path, report: dict[str, int]) -> pd.DataFrame:
    users, items, seconds, lines = [], [], [], []
    for line, record in _json_records(path, report):
        users.append(_record_text(record, "reviewerID", path, line))
        items.append(_record_text(record, "asin", path, line))
        seconds.append(_record_seconds(record, "unixReviewTime", path, line))
        lines.append(line)
    return interactions_frame(users, items, seconds, _unknown(len(lines)), path.name, lines)


def _amazon_meta(path: Path, report: dict[str, int]) -> pd.DataFrame:
    ids, titles, descriptions, categories, lines = [], [], [], [], []
    for line, record in _json_records(path, report):
        ids.append(_record_text(record, "asin", path, line))
        titles.append(_clean_html(record.get("title")))
        descriptions.append(_clean_html(record.get("description")))
        categories.append(_amazon_categories(record))
        lines.append(line)
    return items_frame(ids, titles, descriptions, categories, path.name, lines)


def _amazon_categories(record: dict) -> list[str]:
    """2014 'categories' (one list per path, coarse to fine) or 2018 'category', then brand."""
    paths = record.get("categories", record.get("category")) or []
    names = []
    for entry in [paths] if isinstance(paths, str) else paths:
        names.extend(entry if isinstance(entry, list) else [entry])
    names.append(record.get("brand"))
    cleaned = (_clean_html(name) for name in names)
    return list(dict.fromkeys(name for name in cleaned if name))


def _clean_html(value) -> str:
    """Text without HTML tags, entities or whitespace runs; a list of strings is joined."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = " ".join(str(part) for part in value)
    text = html.unescape(_HTML_TAG.sub(" ", str(value)))
    return _SPACES.sub(" ", text).strip()


def _json_records(path: Path, report: dict[str, int]) -> Iterator[tuple[int, dict]]:
    """(physical line, record) for each non-blank line of a .json or .json.gz file."""
    _require_bytes(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    records = 0
    try:
        with opener(path, "rb") as lines:
            for number, raw in enumerate(lines, start=1):
                if not raw.strip():
                    report["blank_lines_skipped"] += 1
                    continue
                records += 1
                yield number, _parse_record(raw, path, number)
    except (OSError, EOFError, zlib.error) as error:
        raise GenrecDataError(
            f"cannot be read ({error}); the download may be truncated: fetch it again", path=path
        ) from error
    if records == 0:
        raise GenrecDataError(
            "holds no records; it should have one JSON object per line", path=path
        )


def _parse_record(raw: bytes, path: Path, line: int) -> dict:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _not_utf8(error, path, line) from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        record = _python_literal(text, path, line)  # the 2014 dumps hold python dict literals
    if not isinstance(record, dict):
        raise GenrecDataError(
            f"holds a {type(record).__name__}, not a record; each line must be one object",
            path=path,
            line=line,
        )
    return record


def _python_literal(text: str, path: Path, line: int):
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise GenrecDataError(
            "is neither JSON nor a Python dict literal; fix or delete the line",
            path=path,
            line=line,
        ) from None


def _record_text(record: dict, key: str, path: Path, line: int) -> str:
    value = record.get(key)
    text = "" if value is None else str(value).strip()
    if not text:
        raise GenrecDataError(
            f"'{key}' is missing or empty; every record needs one", path=path, line=line, field=key
        )
    return text


def _record_seconds(record: dict, key: str, path: Path, line: int) -> int:
    value = record.get(key)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise GenrecDataError(
            f"{value!r} is not unix seconds; fix the record or delete the line",
            path=path,
            line=line,
            field=key,
        ) from None


# --- microlens: *_pairs.tsv (or *_pairs.csv) + *_titles.csv -----------------------------------


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


# --- tables: CSV, TSV and parquet as text columns plus source_line --------------------------------


def _read_table(path: Path, report: dict[str, int]) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return _read_parquet(path)
    return _read_delimited(path, report)


def _read_delimited(
    path: Path, report: dict[str, int], *, delimiter: str = ",", names: list[str] | None = None
) -> pd.DataFrame:
    """Every field as str plus source_line; names=None means the first line is the header.

    Fields are trimmed. Blank lines are skipped (and counted) but still count towards line numbers.
    """
    _require_bytes(path)
    header = names or _header(path, delimiter)
    quote_char = '"' if delimiter == "," else False  # TSV dumps do not quote: '"' is data
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=0 if names else 1),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char=quote_char, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string())),
        )
    except pa.ArrowInvalid as error:
        _raise_at_bad_line(path, delimiter, header)
        raise GenrecDataError(
            f"cannot be parsed ({error}); check the delimiter and quoting", path=path
        ) from error
    # Spaces around a field are never data; trimming here, in arrow, is several times faster.
    frame = pd.DataFrame(
        {name: pac.utf8_trim_whitespace(table[name]).to_pandas() for name in header}
    )
    frame["source_line"] = np.arange(len(frame), dtype=np.int64) + (1 if names else 2)
    blank = (frame[header] == "").all(axis=1)
    report["blank_lines_skipped"] += int(blank.sum())
    frame = frame[~blank].reset_index(drop=True)
    if frame.empty:
        raise GenrecDataError("has no data rows; add rows below the header", path=path)
    return frame


def _header(path: Path, delimiter: str) -> list[str]:
    with path.open("rb") as file:
        first = file.readline()
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise _not_utf8(error, path, 1) from None
    names = [name.strip() for name in next(csv.reader([text.rstrip("\r\n")], delimiter=delimiter))]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise GenrecDataError(
            f"the header names column '{repeated[0]}' twice; rename one",
            path=path,
            line=1,
            field=repeated[0],
        )
    return names


def _raise_at_bad_line(path: Path, delimiter: str, header: list[str]) -> None:
    """Slow scan, run only after pyarrow failed: raise at the first undecodable or bad line."""
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    hint = "quote values that contain a comma" if delimiter == "," else "separate fields by one tab"
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                text = raw.decode("utf-8-sig").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise _not_utf8(error, path, number) from None
            if not text:
                continue
            fields = next(csv.reader([text], delimiter=delimiter, quoting=quoting))
            if len(fields) != len(header):
                raise GenrecDataError(
                    f"field count is {len(fields)}, expected {len(header)} "
                    f"({', '.join(header)}); fix the line ({hint})",
                    path=path,
                    line=number,
                )


def _read_parquet(path: Path) -> pd.DataFrame:
    """Columns as text, like a CSV read, so one validation path serves both; line = row + 1."""
    _require_bytes(path)
    try:
        frame = pd.read_parquet(path)
    except (pa.ArrowException, OSError) as error:
        raise GenrecDataError(
            f"cannot be read as parquet ({error}); export it again", path=path
        ) from error
    if frame.empty:
        raise GenrecDataError("has no rows; export the table with its data", path=path)
    frame = pd.DataFrame({name: _as_text(frame[name]) for name in frame.columns})
    frame["source_line"] = np.arange(len(frame), dtype=np.int64) + 1
    return frame


def _as_text(column: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column):
        utc = column.dt.tz_convert("UTC") if column.dt.tz else column.dt.tz_localize("UTC")
        column = ((utc - _EPOCH) // pd.Timedelta(seconds=1)).astype("Int64")
    elif pd.api.types.is_float_dtype(column) and (column.dropna() % 1 == 0).all():
        column = column.astype("Int64")  # integers stored as floats because of nulls
    return column.astype("string").fillna("").str.strip().astype(object)


# --- validation ------------------------------------------------------------------------------


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
    content = items[["item_id", "title", "description"]].assign(
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
            f"item '{second['item_id']}' appears again with a different title, description or "
            f"categories (first at line {first_line}); keep one row per item",
            path=path,
            line=int(second["source_line"]),
            field=id_field,
        )
    return items


# --- small helpers -----------------------------------------------------------------------------


def _new_report() -> dict[str, int]:
    return {"blank_lines_skipped": 0, "duplicate_item_rows_dropped": 0}


def _unknown(n: int) -> pd.Series:
    return pd.Series(pd.array([None] * n, dtype="Int64"))


def _first_line(frame: pd.DataFrame, mask: pd.Series) -> int:
    return int(frame["source_line"][mask].iloc[0])


def _columns(frame: pd.DataFrame) -> list[str]:
    return [name for name in frame.columns if name != "source_line"]


def _not_utf8(error: UnicodeDecodeError, path: Path, line: int) -> GenrecDataError:
    return GenrecDataError(
        f"byte {error.start + 1} of the line is not valid UTF-8; re-save the file as UTF-8",
        path=path,
        line=line,
    )


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


FORMATS: dict[str, Callable[[Path], RawDataset]] = {
    "generic": read_generic,
    "amazon": read_amazon,
    "microlens": read_microlens,
}
