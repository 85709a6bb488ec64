"""The table pair every reader returns, before any cleaning.

Readers keep where each row came from (`source_file`, `source_line`) so that cleaning, checks and
error messages can point a person back at the exact line of the raw file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

INTERACTION_COLUMNS = ["user_id", "item_id", "timestamp", "position", "source_file", "source_line"]
ITEM_COLUMNS = ["item_id", "title", "description", "categories", "brand", "source_file", "source_line"]


@dataclass
class RawDataset:
    # user_id, item_id: str; timestamp: Int64 seconds (only differences within one user are
    # meaningful); position: Int64, 0-based order within the user; source_file: str;
    # source_line: int64.
    # Every row has a timestamp, a position or both.
    interactions: pd.DataFrame
    # item_id, title, description, brand ('' when absent): str; categories: list[str], coarse to
    # fine when the source has a hierarchy; source_file: str; source_line: int64.
    items: pd.DataFrame
    report: dict[str, int] = field(default_factory=dict)  # rows dropped while reading, by reason


def interactions_frame(
    user_id, item_id, timestamp, position, source_file, source_line
) -> pd.DataFrame:
    """Interactions in the contract's column order and dtypes; source_file may be a scalar."""
    return pd.DataFrame(
        {
            "user_id": np.asarray(user_id, dtype=object),
            "item_id": np.asarray(item_id, dtype=object),
            "timestamp": pd.array(timestamp, dtype="Int64"),
            "position": pd.array(position, dtype="Int64"),
            "source_file": source_file,
            "source_line": np.asarray(source_line, dtype=np.int64),
        },
        columns=INTERACTION_COLUMNS,
    )


def items_frame(item_id, title, description, categories, source_file, source_line, brand=None) -> pd.DataFrame:
    """Items with the contract's column order and dtypes; categories is a sequence of lists;
    brand None when the source has none."""
    category_lists = np.empty(len(categories), dtype=object)
    category_lists[:] = [list(names) for names in categories]  # element-wise: lists must stay lists
    return pd.DataFrame(
        {
            "item_id": np.asarray(item_id, dtype=object),
            "title": np.asarray(title, dtype=object),
            "description": np.asarray(description, dtype=object),
            "categories": category_lists,
            "brand": np.asarray([""] * len(category_lists) if brand is None else brand, dtype=object),
            "source_file": source_file,
            "source_line": np.asarray(source_line, dtype=np.int64),
        },
        columns=ITEM_COLUMNS,
    )
