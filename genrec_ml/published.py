"""The papers' published figures (published/published_results.csv; its README maps each row onto genrec).

Read with pandas only and checked on the way in: a row that is not a fraction, a cut-off that is not
an integer or a second row for the same (table, dataset, method, metric, k) is an error naming the
line, so a typo in the CSV never reaches the `reproduction` view.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PUBLISHED_RESULTS = Path(__file__).resolve().parents[1] / "published" / "published_results.csv"
PUBLISHED_COLUMNS = ("dataset", "method", "model", "variant", "tokenizer", "protocol", "metric", "reported_metric",
                     "k", "value", "source", "notes")
_OPTIONAL = ("model", "variant", "tokenizer", "notes")  # empty cells are NULL, not ""


def read_published_results(path: str | Path = PUBLISHED_RESULTS) -> pd.DataFrame:
    """The published figures CSV, checked: every column present, values fractions, keys unique."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no published results file {path}")
    frame = pd.read_csv(path, dtype={name: "string" for name in _OPTIONAL}, keep_default_na=False,
                        na_values={name: [""] for name in _OPTIONAL})
    missing = [c for c in PUBLISHED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column {missing[0]!r}; expected {list(PUBLISHED_COLUMNS)}")
    value = pd.to_numeric(frame["value"], errors="coerce")
    k = pd.to_numeric(frame["k"], errors="coerce")
    bad = value.isna() | (value < 0) | (value > 1) | k.isna() | (k != k.round())
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise ValueError(f"{path}, line {row + 2}: value must be a fraction in [0, 1] and k an integer "
                         f"(got value {frame['value'].iloc[row]!r}, k {frame['k'].iloc[row]!r})")
    key = ["source", "dataset", "method", "metric", "k"]
    duplicated = frame.duplicated(key)
    if duplicated.any():
        row = int(duplicated.to_numpy().argmax())
        raise ValueError(f"{path}, line {row + 2}: a second row for {frame.loc[row, key].tolist()}")
    return frame[list(PUBLISHED_COLUMNS)].assign(value=value, k=k.astype("int32"))
