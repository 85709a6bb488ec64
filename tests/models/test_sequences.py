"""SequenceDataset and collate: token layout, padding, truncation and input checks."""

import numpy as np
import pandas as pd
import pytest
import torch

from genrec_ml.data.sequences import SequenceDataset, collate
from genrec_ml.errors import GenrecDataError
from genrec_ml.vocab import PAD, SidVocab

SIDS = np.array([[0, 1], [2, 0], [1, 1]])  # 3 items, 2 levels
VOCAB = SidVocab((3, 2), n_user_buckets=4)  # level 0 -> ids 2..4, level 1 -> 5..6, users 7..10


def frame(histories, targets=None, users=None):
    n = len(histories)
    return pd.DataFrame({
        "user_index": users if users is not None else list(range(n)),
        "target_item_index": targets if targets is not None else [0] * n,
        "history": histories,
    })


def test_item_tokens_are_flattened_oldest_first_after_the_user_token():
    data = SequenceDataset(frame([[1, 0]], targets=[2], users=[3]), SIDS, VOCAB)
    example = data[0]
    user = int(VOCAB.user_tokens(torch.tensor([3]))[0])
    assert example["input_ids"].tolist() == [user, 2 + 2, 5 + 0, 2 + 0, 5 + 1]
    assert example["targets"].tolist() == [1, 1]
    assert int(example["target_items"]) == 2


def test_collate_right_pads_and_masks():
    data = SequenceDataset(frame([[1, 0, 2], [2]]), SIDS, VOCAB)
    batch = collate([data[0], data[1]])
    assert batch["input_ids"].shape == (2, 7)  # 1 user token + 3 items * 2 levels
    assert batch["attention_mask"].sum(1).tolist() == [7, 3]
    assert (batch["input_ids"][1, 3:] == PAD).all()
    assert batch["targets"].shape == (2, 2)


def test_max_history_keeps_the_most_recent_items():
    data = SequenceDataset(frame([[0, 1, 2]]), SIDS, VOCAB, max_history=1)
    assert data[0]["input_ids"][1:].tolist() == [2 + 1, 5 + 1]  # item 2 only


def test_without_user_buckets_there_is_no_user_token():
    data = SequenceDataset(frame([[2]]), SIDS, SidVocab((3, 2), n_user_buckets=0))
    assert data[0]["input_ids"].tolist() == [3, 6]


def test_items_outside_the_catalog_are_reported_with_their_row():
    with pytest.raises(GenrecDataError, match="row 1 refers to item 7"):
        SequenceDataset(frame([[0], [1, 7]]), SIDS, VOCAB)
    with pytest.raises(GenrecDataError, match="target_item_index"):
        SequenceDataset(frame([[0]], targets=[3]), SIDS, VOCAB)
    with pytest.raises(GenrecDataError, match="history"):
        SequenceDataset(pd.DataFrame({"user_index": [0], "target_item_index": [0]}), SIDS, VOCAB)


def test_history_eos_ends_every_history_with_token_one():
    vocab = SidVocab((3, 2), n_user_buckets=4, history_eos=True)
    data = SequenceDataset(frame([[1, 0], []], users=[3, 1]), SIDS, vocab)
    user = int(vocab.user_tokens(torch.tensor([3]))[0])
    assert data[0]["input_ids"].tolist() == [user, 2 + 2, 5 + 0, 2 + 0, 5 + 1, 1]
    assert data[1]["input_ids"].tolist()[1:] == [1]  # an empty history is the user token and EOS
