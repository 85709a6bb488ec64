"""Caser: what a prediction can see (the last `window` items, its user), and the user-index check."""

import pytest
import torch

from genrec_ml.errors import GenrecDataError
from tests.models.baselines.tiny import make_batch, tiny_model


def test_the_prediction_sees_exactly_the_last_window_items():
    model = tiny_model("caser", window=3)
    batch = make_batch([[1, 2, 3, 4, 5, 6]], [0])
    scores = model.full_sort_scores(batch)
    for position, inside in [(0, False), (2, False), (3, True), (5, True)]:
        changed = batch["history"].clone()
        changed[0, position] = 11 if changed[0, position] != 11 else 10
        moved = not torch.allclose(model.full_sort_scores(batch | {"history": changed}), scores, atol=1e-6)
        assert moved == inside, position


def test_the_last_position_of_encode_is_the_prediction():
    model = tiny_model("caser-users")
    batch = make_batch([[1, 2], [3, 4, 5, 6, 7]], [0, 1], users=[2, 7])
    hidden = model.encode(batch["history"], batch["user_index"])[:, -1]  # (B, d)
    torch.testing.assert_close(hidden @ model.item_embedding.weight[1:].T, model.full_sort_scores(batch))


def test_users_change_the_scores_and_must_fit_the_user_embedding():
    model = tiny_model("caser-users")  # n_users = 8
    one, other = make_batch([[1, 2]], [0], users=[1]), make_batch([[1, 2]], [0], users=[2])
    assert not torch.allclose(model.full_sort_scores(one), model.full_sort_scores(other))
    with pytest.raises(GenrecDataError, match="n_users") as error:
        model.full_sort_scores(make_batch([[1, 2]], [0], users=[8]))
    assert error.value.field == "user_index"
