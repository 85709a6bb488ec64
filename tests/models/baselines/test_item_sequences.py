"""ItemSequenceDataset and collate_items: left padding, truncation and input checks."""

import pandas as pd
import pytest

from genrec_ml.data.item_sequences import ItemSequenceDataset, collate_items
from genrec_ml.errors import GenrecConfigError, GenrecDataError


def frame(histories, targets=None, users=None):
    n = len(histories)
    return pd.DataFrame({
        "user_index": users if users is not None else list(range(n)),
        "target_item_index": targets if targets is not None else [0] * n,
        "history": histories,
    })


def batch_of(data):
    return collate_items([data[i] for i in range(len(data))])


def test_histories_are_left_padded_with_items_shifted_by_one():
    data = ItemSequenceDataset(frame([[4, 0, 2], [3], []], targets=[1, 2, 3], users=[9, 8, 7]), n_items=5)
    batch = batch_of(data)
    assert batch["history"].tolist() == [[5, 1, 3], [0, 0, 4], [0, 0, 0]]  # most recent item in the last column
    assert batch["lengths"].tolist() == [3, 1, 0]
    assert batch["target_items"].tolist() == [1, 2, 3]  # 0-based, not shifted
    assert batch["user_index"].tolist() == [9, 8, 7]
    assert data.target_items.tolist() == [1, 2, 3]  # what the training loop scores against


def test_a_batch_of_empty_histories_still_has_one_column():
    batch = batch_of(ItemSequenceDataset(frame([[], []]), n_items=5))
    assert batch["history"].tolist() == [[0], [0]]


def test_max_history_keeps_the_most_recent_items():
    data = ItemSequenceDataset(frame([[0, 1, 2, 3, 4], [1]]), n_items=5, max_history=2)
    assert batch_of(data)["history"].tolist() == [[4, 5], [0, 2]]
    assert batch_of(data)["lengths"].tolist() == [2, 1]
    with pytest.raises(GenrecConfigError, match="max_history"):
        ItemSequenceDataset(frame([[0]]), n_items=5, max_history=0)


def test_items_outside_the_catalog_are_reported_with_field_and_row():
    with pytest.raises(GenrecDataError, match="history.*row 2 refers to item 5"):
        ItemSequenceDataset(frame([[0], [1, 2], [3, 5]]), n_items=5)
    with pytest.raises(GenrecDataError, match="history.*row 0 refers to item -1"):
        ItemSequenceDataset(frame([[-1]]), n_items=5)
    with pytest.raises(GenrecDataError, match="target_item_index.*row 1 refers to item 5") as error:
        ItemSequenceDataset(frame([[0], [1]], targets=[0, 5]), n_items=5)
    assert error.value.field == "target_item_index"


@pytest.mark.parametrize("column", ["user_index", "target_item_index", "history"])
def test_a_missing_column_is_named(column):
    with pytest.raises(GenrecDataError, match=column) as error:
        ItemSequenceDataset(frame([[0]]).drop(columns=column), n_items=5)
    assert error.value.field == column
