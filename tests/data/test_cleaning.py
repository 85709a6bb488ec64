import pandas as pd
import pytest

from genrec_ml.config import CleaningConfig
from genrec_ml.data.cleaning import clean, item_text, k_core
from genrec_ml.errors import GenrecConfigError, GenrecDataError


def _raw(rows):
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "position"])
    df["timestamp"] = df["timestamp"].astype("Int64")
    df["position"] = df["position"].astype("Int64")
    df["source_file"] = "x.csv"
    df["source_line"] = range(2, len(df) + 2)
    return df


def _items(ids):
    return pd.DataFrame({"item_id": ids, "title": [f"t {i}" for i in ids], "description": "",
                         "categories": [["a", "b"] for _ in ids], "source_file": "i.csv",
                         "source_line": range(2, len(ids) + 2)})


def test_duplicates_and_unknown_items_are_dropped_and_counted():
    raw = _raw([("u1", "a", 10, None), ("u1", "a", 10, None), ("u1", "b", 5, None),
                ("u1", "ghost", 7, None), ("u2", "a", 1, None)])
    out = clean(raw, _items(["a", "b"]), CleaningConfig(k_core=1))
    assert out.report["duplicate_interactions_dropped"] == 1
    assert out.report["unknown_item_interactions_dropped"] == 1
    # u1's rows ordered by timestamp: b (5) before a (10)
    u1 = out.interactions[out.interactions.user_id == "u1"]
    assert u1["item_id"].tolist() == ["b", "a"]
    assert u1["position"].tolist() == [0, 1]
    assert out.report["interactions"] == 3


def test_position_orders_rows_when_every_row_has_one():
    raw = _raw([("u", "a", 50, 2), ("u", "b", 10, 0), ("u", "c", 99, 1)])
    out = clean(raw, _items(["a", "b", "c"]), CleaningConfig(k_core=1))
    assert out.interactions["item_id"].tolist() == ["b", "c", "a"]


def test_indices_are_dense_and_sorted_by_id():
    raw = _raw([("u2", "z", 1, None), ("u1", "y", 1, None), ("u1", "z", 2, None)])
    out = clean(raw, _items(["y", "z"]), CleaningConfig(k_core=1))
    assert out.items[["item_id", "item_index"]].values.tolist() == [["y", 0], ["z", 1]]
    assert sorted(out.interactions["user_index"].unique()) == [0, 1]
    assert out.interactions.loc[out.interactions.user_id == "u1", "user_index"].unique().tolist() == [0]


def test_k_core_is_iterative():
    # item c has 2 users; with k=2, user u3 (only c, d) ... removing d (1 user) drops u3 below 2,
    # which drops c to 1 user, which then must go as well: needs a second round.
    inter = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u3", "u3"],
                          "item_id": ["a", "b", "a", "b", "c", "d"]})
    kept, rounds = k_core(inter, 2)
    assert set(kept["item_id"]) == {"a", "b"}
    assert rounds >= 1
    again, _ = k_core(kept, 2)
    assert len(again) == len(kept)


def test_empty_after_k_core_names_the_field():
    raw = _raw([("u", "a", 1, None)])
    with pytest.raises(GenrecDataError, match="k_core"):
        clean(raw, _items(["a"]), CleaningConfig(k_core=5))


def test_rows_without_order_are_rejected():
    raw = _raw([("u", "a", None, None), ("u", "b", 1, None)])
    with pytest.raises(GenrecDataError, match="timestamp/position"):
        clean(raw, _items(["a", "b"]), CleaningConfig(k_core=1))


def test_impossible_k_core():
    with pytest.raises(GenrecConfigError, match="k_core"):
        CleaningConfig(k_core=0)


def test_item_text_skips_numeric_attribute_ids():
    assert item_text("red polish", "", ["173", "1"]) == "red polish"
    assert item_text("red polish", "shiny", ["Beauty", "Nails"]) == "red polish. shiny. Category: Beauty > Nails"


def test_item_without_any_words_gets_a_fallback_text():
    assert item_text("", "", ["173", "1"], "B00X") == "item B00X attribute 173 attribute 1"
    raw = _raw([("u", "a", 1, None)])
    items = _items(["a"]).assign(title="", categories=[["7"]])
    out = clean(raw, items, CleaningConfig(k_core=1))
    assert out.items["text"].tolist() == ["item a attribute 7"]
    assert out.report["items_without_title"] == 1
