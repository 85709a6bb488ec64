"""Raw rows -> cleaned, chronological interactions with integer indices.

Documented drops (each counted in the report): exact duplicate interaction rows, interactions
whose item has no metadata row, and users/items removed by the iterative k-core filter.

Documented replacements (counted too): a title with no words once markup is stripped, or one
shared by a large share of the catalog, is no name to embed; the item's brand, categories or
description stands in for it (`item_names`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genrec_ml.config import CleaningConfig
from genrec_ml.errors import GenrecDataError
from genrec_ml.text.markup import has_words, strip_markup

INTERACTION_COLUMNS = ["user_id", "item_id", "user_index", "item_index", "position", "timestamp"]
ITEM_COLUMNS = ["item_id", "item_index", "title", "description", "categories", "category", "text"]
TITLE_FALLBACKS = ("brand", "categories", "description")  # stand-ins for a title, in this order


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
    return _index(inter, raw_items, report, config)


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


@dataclass
class ItemNames:
    names: list[str]  # the title, or what stands in for it ('' when nothing has words)
    sources: list[str]  # "title", a TITLE_FALLBACKS field, or "" when nothing stands in
    report: dict[str, int]  # titles replaced by reason, stand-ins by field, the shared-title limit


def shared_title_limit(n_items: int, config: CleaningConfig) -> int:
    """A title carried by more items than this is shared by too much of the catalog to name one."""
    return max(int(config.shared_title_share * n_items), config.shared_title_min_items)


def item_names(titles: pd.Series, brands: pd.Series, categories: pd.Series, descriptions: pd.Series,
               config: CleaningConfig) -> ItemNames:
    """Each item's name to embed: its title, unless that has no words once markup is stripped or is
    carried by more than `shared_title_limit` items; then the first of brand, categories and
    description that has words.

    Titles are judged after `strip_markup` (raw rows of old warehouses, and formats whose readers do
    not strip, may still hold debris) but kept as the reader gave them, so plain text never changes.
    """
    plain = titles.fillna("").map(strip_markup)
    empty = ~plain.map(has_words)
    key = plain.str.casefold()
    limit = shared_title_limit(len(titles), config)
    shared = ~empty & (key.map(key.value_counts()) > limit)
    names, sources = [], []
    for title, replace, brand, names_of, description in zip(
            titles.fillna(""), empty | shared, brands, categories, descriptions, strict=True):
        stand_ins = {"brand": brand, "categories": " > ".join(_word_categories(names_of)),
                     "description": description}
        source = "title" if not replace else next((f for f in TITLE_FALLBACKS if has_words(stand_ins[f])), "")
        names.append(title if source == "title" else stand_ins.get(source, ""))
        sources.append(source)
    report = {"titles_replaced_empty": int(empty.sum()), "titles_replaced_shared": int(shared.sum()),
              "titles_shared_above": limit,
              **{f"titles_from_{field}": sources.count(field) for field in TITLE_FALLBACKS},
              "titles_without_stand_in": sources.count("")}
    return ItemNames(names, sources, report)


def item_text(title: str, description: str, categories: list[str], item_id: str = "") -> str:
    """The text that is embedded. Numeric-only attribute ids carry no words, so they are left out,
    unless nothing else is known: then the id and attribute ids stand in, so no text is empty."""
    parts = [title.strip()]
    if description.strip():
        parts.append(description.strip())
    words = _word_categories(categories)
    if words:
        parts.append("Category: " + " > ".join(words))
    text = ". ".join(p for p in parts if p)
    if not text:
        text = " ".join([f"item {item_id}".strip(), *(f"attribute {c}" for c in categories)])
    return text


def named_item_text(name: str, source: str, description: str, categories: list[str], item_id: str = "") -> str:
    """`item_text` with `name` in the title's place; the field that stands in is not repeated."""
    if source == "brand":  # Amazon also lists the brand as the last category
        categories = [c for c in categories if c.casefold() != name.casefold()]
    return item_text(name, "" if source == "description" else description,
                     [] if source == "categories" else categories, item_id)


def _word_categories(categories: list[str]) -> list[str]:
    return [c for c in categories if not c.strip().isdigit()]


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


def _index(inter: pd.DataFrame, raw_items: pd.DataFrame, report: dict[str, int],
           config: CleaningConfig) -> CleanedDataset:
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
    # Raw items written before readers kept the brand have no such column, or NULL in it.
    brands = items["brand"].fillna("") if "brand" in items.columns else pd.Series("", index=items.index)
    titles = items["title"].fillna("")
    named = item_names(titles, brands, items["categories"], items["description"], config)
    items["title"] = named.names
    items["text"] = [named_item_text(n, s, d, c, i) for n, s, d, c, i in
                     zip(named.names, named.sources, items["description"], items["categories"], items["item_id"],
                         strict=True)]
    report.update(users=len(users), items=len(item_ids), interactions=len(out),
                  items_without_title=int((titles.str.strip() == "").sum()), **named.report)
    return CleanedDataset(out[INTERACTION_COLUMNS], items[ITEM_COLUMNS], report)


def _require_columns(df: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise GenrecDataError(f"missing column(s) {missing}; found {list(df.columns)}", field=name)
