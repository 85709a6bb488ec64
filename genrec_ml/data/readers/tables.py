"""CSV, TSV and parquet files as text columns plus source_line, for the readers of this package.

CSV and TSV files are parsed by pyarrow in one pass and validated column-wise; only when pyarrow
rejects a file do we scan it line by line to say where it broke. Parquet columns become text too,
so one validation path serves both.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pac
import pyarrow.csv as pacsv

from genrec_ml.data.readers.common import _EPOCH, _not_utf8, _require_bytes
from genrec_ml.errors import GenrecDataError


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
