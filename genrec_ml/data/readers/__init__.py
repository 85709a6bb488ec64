"""Readers that turn each raw dataset format into a RawDataset, and the registry that picks one.

Every bad input raises GenrecDataError naming the file, the physical line (a header is line 1) and
the field, and saying what to do. Each format is one module (generic, amazon, microlens) exposing
`read_<format>(folder)` and the glob patterns of its files; a new format is a new module plus one
entry in FORMATS and _SIGNATURES here. What the formats share lives in common (file lookup, errors
and column checks) and tables (CSV, TSV and parquet as text columns).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from genrec_ml.data.raw import RawDataset
from genrec_ml.data.readers.amazon import AMAZON_META, AMAZON_REVIEWS, read_amazon
from genrec_ml.data.readers.common import _existing_folder, _file_names, _listing, _matching
from genrec_ml.data.readers.generic import GENERIC_INTERACTIONS, GENERIC_ITEMS, read_generic
from genrec_ml.data.readers.microlens import (
    MICROLENS_PAIRS_CSV,
    MICROLENS_PAIRS_TSV,
    MICROLENS_TITLES,
    read_microlens,
)
from genrec_ml.errors import GenrecDataError

FORMATS: dict[str, Callable[[Path], RawDataset]] = {
    "generic": read_generic,
    "amazon": read_amazon,
    "microlens": read_microlens,
}

# The files whose presence identifies each format.
_SIGNATURES = {
    "generic": GENERIC_INTERACTIONS,
    "amazon": AMAZON_REVIEWS,
    "microlens": MICROLENS_PAIRS_CSV + MICROLENS_PAIRS_TSV,
}


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


__all__ = [
    "AMAZON_META",
    "AMAZON_REVIEWS",
    "FORMATS",
    "GENERIC_INTERACTIONS",
    "GENERIC_ITEMS",
    "MICROLENS_PAIRS_CSV",
    "MICROLENS_PAIRS_TSV",
    "MICROLENS_TITLES",
    "detect_format",
    "read_amazon",
    "read_dataset",
    "read_generic",
    "read_microlens",
]
