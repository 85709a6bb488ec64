"""Amazon Product Reviews dumps: reviews_*.json[.gz] or *_5.json[.gz] + meta_*.json[.gz].

One record a line: the 2018 dumps are JSON, the 2014 ones python dict literals, so a line that is
not JSON is tried as a literal. Metadata text is stripped of the HTML the scraped pages carry,
truncated tags included (`strip_markup`).
"""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from genrec_ml.data.raw import RawDataset, interactions_frame, items_frame
from genrec_ml.data.readers.common import (
    _drop_duplicate_items,
    _existing_folder,
    _new_report,
    _not_utf8,
    _one_file,
    _require_bytes,
    _unknown,
)
from genrec_ml.errors import GenrecDataError
from genrec_ml.text.markup import strip_markup

AMAZON_REVIEWS = ["reviews_*.json", "reviews_*.json.gz", "*_5.json", "*_5.json.gz"]
AMAZON_META = ["meta_*.json", "meta_*.json.gz"]


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
    ids, titles, descriptions, categories, brands, lines = [], [], [], [], [], []
    for line, record in _json_records(path, report):
        ids.append(_record_text(record, "asin", path, line))
        titles.append(_clean_html(record.get("title")))
        descriptions.append(_clean_html(record.get("description")))
        categories.append(_amazon_categories(record))
        brands.append(_clean_html(record.get("brand")))
        lines.append(line)
    return items_frame(ids, titles, descriptions, categories, path.name, lines, brands)


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
    """Text without markup or whitespace runs; a list of strings is joined."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = " ".join(str(part) for part in value)
    return strip_markup(str(value))


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
