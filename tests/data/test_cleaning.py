import json

import pandas as pd
import pytest

from genrec_ml.config import CleaningConfig
from genrec_ml.data.cleaning import clean, item_text, k_core, shared_title_limit
from genrec_ml.data.readers import read_dataset
from genrec_ml.errors import GenrecConfigError, GenrecDataError

DEBRIS = '<span class="a-size-medium a-color-secondary"'  # the title of every item in a real 2018 dump


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


def _one_interaction_each(ids):
    return _raw([(f"u{i}", item, 1, None) for i, item in enumerate(ids)])


def test_title_without_words_falls_back_to_brand_then_categories_then_description():
    ids = ["a", "b", "c", "d", "e"]
    items = _items(ids).assign(
        title=[DEBRIS, "...", "", "</span>", "Real name"],
        brand=["OPI", "", "", "", "Ignored"],
        categories=[["Beauty", "OPI"], ["Beauty", "Nails"], ["173"], [], ["Beauty"]],
        description=["Shiny", "Red", "Soft and smooth", "", "Kept"])
    out = clean(_one_interaction_each(ids), items, CleaningConfig(k_core=1))
    assert out.items["title"].tolist() == ["OPI", "Beauty > Nails", "Soft and smooth", "", "Real name"]
    # The stand-in is not repeated: the brand leaves the categories, categories or description their place.
    assert out.items["text"].tolist() == ["OPI. Shiny. Category: Beauty", "Beauty > Nails. Red",
                                          "Soft and smooth", "item d", "Real name. Kept. Category: Beauty"]
    report = out.report
    assert (report["titles_replaced_empty"], report["titles_replaced_shared"]) == (4, 0)
    assert (report["titles_from_brand"], report["titles_from_categories"], report["titles_from_description"],
            report["titles_without_stand_in"]) == (1, 1, 1, 1)
    assert report["items_without_title"] == 1  # only the blank one: kept as older reports count it


def test_title_shared_by_much_of_the_catalog_falls_back():
    ids = [f"i{n:02d}" for n in range(20)]
    # 6 items share a placeholder, more than the limit of 5; 5 variants sharing a name are at it.
    titles = ["Amazon.com"] * 6 + ["Nail polish"] * 5 + [f"Item {n}" for n in range(9)]
    items = _items(ids).assign(title=titles, brand=[f"Brand {n}" for n in range(20)])
    out = clean(_one_interaction_each(ids), items, CleaningConfig(k_core=1))
    assert out.items["title"].tolist() == [f"Brand {n}" for n in range(6)] + titles[6:]
    assert out.report["titles_replaced_shared"] == 6
    assert out.report["titles_shared_above"] == 5
    assert out.report["titles_from_brand"] == 6
    stricter = clean(_one_interaction_each(ids), items, CleaningConfig(k_core=1, shared_title_min_items=4))
    assert stricter.report["titles_replaced_shared"] == 11


def test_shared_title_limit_is_a_share_of_the_catalog_but_at_least_min_items():
    config = CleaningConfig()
    assert shared_title_limit(20, config) == 5
    assert shared_title_limit(1_000, config) == 10
    assert shared_title_limit(123_456, config) == 1_234


@pytest.mark.parametrize(("field", "value"), [("shared_title_share", 0.0), ("shared_title_share", 1.5),
                                              ("shared_title_min_items", 0)])
def test_impossible_shared_title_limits(field, value):
    with pytest.raises(GenrecConfigError, match=field):
        CleaningConfig(**{field: value})


def _amazon_2018_meta(n_items: int) -> list[dict]:
    """A small-category 2018 meta dump: every title scraping debris but the last two; brand,
    category path or description say what each item is, as in the real dump."""
    records = []
    for n in range(n_items):
        record = {"asin": f"B{n:03d}", "title": DEBRIS, "category": ["</span></span></span>"],
                  "description": [f"<p>Cleanser number {n}</p>"], "brand": "", "also_buy": [], "price": "$5.00",
                  "main_cat": '<img src="x.png" class="nav-categ-image" alt="All Beauty"/>'}
        if n < 6:
            record["brand"] = f"Brand {n}"
        elif n < 8:
            record.update(category=["All Beauty", f"Serum {n}"], description=[])
        # the rest: no brand, no category, only the description
        records.append(record)
    records[-2]["title"], records[-1]["title"] = "Rose water", "Clay mask"
    return records


def test_amazon_debris_titles_fall_back_to_distinct_texts(tmp_path):
    meta = _amazon_2018_meta(12)
    reviews = [{"reviewerID": f"R{user}", "asin": record["asin"], "unixReviewTime": 1500000000 + user}
               for record in meta for user in range(2)]
    for name, records in (("All_Beauty_5.json", reviews), ("meta_All_Beauty.json", meta)):
        (tmp_path / name).write_text("".join(json.dumps(record) + "\n" for record in records))
    raw = read_dataset(tmp_path)
    out = clean(raw.interactions, raw.items, CleaningConfig(k_core=1))
    texts = out.items["text"]
    assert texts.is_unique
    assert not texts.str.contains("<|span|class=", regex=True).any()
    assert texts.tolist()[:1] + texts.tolist()[6:9] + texts.tolist()[-1:] == [
        "Brand 0. Cleanser number 0", "All Beauty > Serum 6", "All Beauty > Serum 7", "Cleanser number 8",
        "Clay mask. Cleanser number 11"]
    report = out.report
    assert report["titles_replaced_empty"] == 10
    assert (report["titles_from_brand"], report["titles_from_categories"], report["titles_from_description"],
            report["titles_without_stand_in"]) == (6, 2, 2, 0)
