"""Raw rows -> cleaned, chronological interactions with integer indices.

Documented drops (each counted in the report): exact duplicate interaction rows, interactions
whose item has no metadata row, and users/items removed by the iterative k-core filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genrec_ml.config import CleaningConfig
from genrec_ml.errors import GenrecDataError

INTERACTION_COLUMNS = ["user_id", "item_id", "user_index", "item_index", "position", "timestamp"]
ITEM_COLUMNS = ["item_id", "item_index", "title", "description", "categories", "category", "text"]


@dataclass
class CleanedDataset:
    interactions: pd.DataFrame  # INTERACTION_COLUMNS, sorted by (user_index, position)
    items: pd.DataFrame  # ITEM_COLUMNS, sorted by item_index, only items that kept interactions
    report: dict[str, int] = field(default_factory=dict)


def clean(raw_interactions: pd.DataFrame, raw_items: pd.DataFrame, config: CleaningConfig) -> CleanedDataset:
    _require_columns(raw_interactions, ["user_id", "item_id", "timestamp", "position"], "raw_interactions")
    _require_columns(raw_items, ["item_id", "title", "description", "categories"], "raw_items")
    if raw_interactions.empty:
        raise GenrecDataError("no interactions to clean: the raw table is empty", field="raw_interactions")
    report: dict[str, int] = {"raw_interactions": len(raw_interactions)}

    inter = _chronological(raw_interactions)
    before = len(inter)
    inter = inter.drop_duplicates(["user_id", "item_id", "timestamp", "position"], keep="first")
    report["duplicate_interactions_dropped"] = before - len(inter)

    known = inter["item_id"].isin(raw_items["item_id"])
    report["unknown_item_interactions_dropped"] = int((~known).sum())
    inter = inter[known]

    inter, rounds = k_core(inter, config.k_core)
    report["k_core_rounds"] = rounds
    report["k_core_interactions_dropped"] = before - report["duplicate_interactions_dropped"] - report[
        "unknown_item_interactions_dropped"] - len(inter)
    if inter.empty:
        raise GenrecDataError(
            f"the {config.k_core}-core filter removed every interaction; lower k_core "
            f"(users and items need >= k_core interactions each)",
            field="k_core",
        )
    return _index(inter, raw_items, report)


def k_core(inter: pd.DataFrame, k: int) -> tuple[pd.DataFrame, int]:
    """Iteratively drop users and items with fewer than k interactions until none is left."""
    rounds = 0
    while True:
        user_ok = inter.groupby("user_id")["item_id"].transform("size") >= k
        item_ok = inter.groupby("item_id")["user_id"].transform("size") >= k
        keep = user_ok & item_ok
        if keep.all():
            return inter, rounds
        inter = inter[keep]
        rounds += 1


def item_text(title: str, description: str, categories: list[str], item_id: str = "") -> str:
    """The text that is embedded. Numeric-only attribute ids carry no words, so they are left out,
    unless nothing else is known: then the id and attribute ids stand in, so no text is empty."""
    parts = [title.strip()]
    if description.strip():
        parts.append(description.strip())
    words = [c for c in categories if not c.strip().isdigit()]
    if words:
        parts.append("Category: " + " > ".join(words))
    text = ". ".join(p for p in parts if p)
    if not text:
        text = " ".join([f"item {item_id}".strip(), *(f"attribute {c}" for c in categories)])
    return text


def _chronological(raw: pd.DataFrame) -> pd.DataFrame:
    """Sort each user's rows: by position when every row has one (exact source order), else by time."""
    if raw["position"].notna().all():
        keys = ["user_id", "position", "timestamp"]
    elif raw["timestamp"].notna().all():
        keys = ["user_id", "timestamp", "position"]
    else:
        bad = raw.index[raw["position"].isna() & raw["timestamp"].isna()]
        row = int(bad[0]) + 1 if len(bad) else None
        raise GenrecDataError(
            "every interaction needs a position, or every interaction needs a timestamp, to be ordered; "
            "fill the missing column",
            line=row,
            field="timestamp/position",
        )
    tiebreak = [c for c in ("source_file", "source_line") if c in raw.columns]
    return raw.sort_values(keys + tiebreak, kind="stable").reset_index(drop=True)


def _index(inter: pd.DataFrame, raw_items: pd.DataFrame, report: dict[str, int]) -> CleanedDataset:
    users = np.sort(inter["user_id"].unique())
    item_ids = np.sort(inter["item_id"].unique())
    user_index = pd.Series(np.arange(len(users)), index=users)
    item_index = pd.Series(np.arange(len(item_ids)), index=item_ids)

    out = pd.DataFrame({
        "user_id": inter["user_id"].to_numpy(),
        "item_id": inter["item_id"].to_numpy(),
        "user_index": user_index.loc[inter["user_id"]].to_numpy(),
        "item_index": item_index.loc[inter["item_id"]].to_numpy(),
        "timestamp": inter["timestamp"].astype("Int64").to_numpy(),
    })
    # Chronological order is already set; re-sort by user index keeps it within each user.
    out = out.sort_values("user_index", kind="stable").reset_index(drop=True)
    out.insert(4, "position", out.groupby("user_index").cumcount().astype("int64"))
    out["timestamp"] = out["timestamp"].astype("Int64")

    items = raw_items.drop_duplicates("item_id").set_index("item_id").loc[item_ids].reset_index()
    items["item_index"] = np.arange(len(items))
    items["description"] = items["description"].fillna("")
    items["categories"] = items["categories"].map(lambda c: list(c) if c is not None else [])
    items["category"] = items["categories"].map(lambda c: c[0] if c else "")
    titles = items["title"].fillna("")
    items["text"] = [item_text(t, d, c, i) for t, d, c, i in
                     zip(titles, items["description"], items["categories"], items["item_id"], strict=True)]
    report.update(users=len(users), items=len(item_ids), interactions=len(out),
                  items_without_title=int((titles.str.strip() == "").sum()))
    return CleanedDataset(out[INTERACTION_COLUMNS], items[ITEM_COLUMNS], report)


def _require_columns(df: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise GenrecDataError(f"missing column(s) {missing}; found {list(df.columns)}", field=name)
