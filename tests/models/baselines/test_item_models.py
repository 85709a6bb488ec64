"""The contract every item-id baseline shares: shapes, gradients, causality, padding, ranking, learning."""

import dataclasses

import pytest
import torch

from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.bert4rec import BERT4RecConfig
from genrec_ml.models.caser import CaserConfig
from genrec_ml.models.gru4rec import GRU4RecConfig
from genrec_ml.models.rearec import ReaRecConfig
from genrec_ml.models.sasrec import SASRecConfig
from tests.models.baselines.tiny import (
    BATCH,
    CAUSAL,
    N_ITEMS,
    VARIANTS,
    counting_batch,
    item_embedding,
    make_batch,
    padded,
    tiny_model,
)


def batch():
    return make_batch(**BATCH)


def per_position(model, history):
    """(B, T, d) state at every position of a causal model."""
    encoder = model.backbone if hasattr(model, "backbone") else model
    return encoder.encode(history)


def moved(a, b) -> bool:
    """Whether `a` differs from `b` by more than rounding, relative to b's size."""
    return bool((a - b).abs().max() > 1e-5 * b.abs().max())


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_backward_shapes_and_gradients(variant):
    model = tiny_model(variant).train()
    logits, loss = model(batch())
    assert logits.shape == (3, N_ITEMS)
    assert loss.shape == () and torch.isfinite(loss)
    assert model.full_sort_scores(batch()).shape == (3, N_ITEMS)
    loss.backward()
    # every weight is trained, the input path included (item rows also get gradient as outputs)
    untrained = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert untrained == []
    assert (item_embedding(model).weight.grad[0] == 0).all()  # padding stays the zero vector


@pytest.mark.parametrize("variant", CAUSAL)
def test_a_position_never_sees_later_items(variant):
    model = tiny_model(variant)
    history = batch()["history"]  # (3, 7), rows padded in front
    other = (history % N_ITEMS) + 1  # a different item at every real position
    other[history == 0] = 0
    hidden = per_position(model, history)  # (B, T, d)
    real = history != 0  # states at padding positions are never read
    for t in range(history.shape[1] - 1):
        later_changed = torch.cat([history[:, : t + 1], other[:, t + 1 :]], dim=1)  # (B, T)
        changed_hidden = per_position(model, later_changed)
        upto = real[:, : t + 1]
        torch.testing.assert_close(changed_hidden[:, : t + 1][upto], hidden[:, : t + 1][upto], atol=1e-6, rtol=0)
        # the full row (row 2) has a real item at t + 1: its own state does move, so the test can fail
        assert moved(changed_hidden[2, t + 1], hidden[2, t + 1])


@pytest.mark.parametrize("variant", ["sasrec", "gru4rec", "rearec-erl"])
def test_the_oldest_item_still_reaches_the_last_position(variant):
    model = tiny_model(variant)
    history = batch()["history"]
    changed = history.clone()
    changed[2, 0] = 1 if history[2, 0] != 1 else 2
    assert moved(per_position(model, changed)[2, -1], per_position(model, history)[2, -1])


@pytest.mark.parametrize("variant", VARIANTS)
def test_extra_padding_does_not_change_scores(variant):
    model = tiny_model(variant)
    scores = model.full_sort_scores(batch())
    torch.testing.assert_close(model.full_sort_scores(padded(batch(), 3)), scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["sasrec", "gru4rec", "caser", "bert4rec", "rearec-prl"])
def test_only_the_last_max_history_items_are_read(variant):
    model = tiny_model(variant, max_history=4)
    long = make_batch([[1, 2, 3, 4, 5, 6]], [7])
    recent = make_batch([[3, 4, 5, 6]], [7])
    torch.testing.assert_close(model.full_sort_scores(long), model.full_sort_scores(recent))


@pytest.mark.parametrize("variant", VARIANTS)
def test_recommend_is_the_top_k_of_full_sort_scores_without_dropout(variant):
    model = tiny_model(variant, dropout=0.5).train()
    items, scores = model.recommend(batch(), top_k=5)
    assert model.training  # the mode it found
    full = model.full_sort_scores(batch())
    assert torch.equal(items, full.topk(5).indices)
    torch.testing.assert_close(scores, full.topk(5).values)
    assert items.dtype == torch.long and ((items >= 0) & (items < N_ITEMS)).all()
    assert torch.equal(model.recommend(batch(), top_k=5)[0], items)  # dropout off: the same again
    with pytest.raises(GenrecConfigError, match="top_k"):
        model.recommend(batch(), top_k=N_ITEMS + 1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_short_training_learns_the_next_item_pattern(variant):
    data = counting_batch(48)
    model = tiny_model(variant).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    torch.manual_seed(0)
    before = model(data)[1].item()
    for _ in range(30):
        _, loss = model(data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.manual_seed(0)  # the same negatives, masks and noise as the first measurement
    after = model(data)[1].item()
    assert after < 0.6 * before
    hits = (model.recommend(data, top_k=1)[0][:, 0] == data["target_items"]).float().mean()
    assert hits > 0.4  # chance is 1 / 12


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_checkpointed_config_rebuilds_the_same_model(variant):
    model = tiny_model(variant)
    cls = type(model)
    assert model.input_kind == "items" and cls.config_class is type(model.config)
    rebuilt = cls(cls.config_class(**dataclasses.asdict(model.config)))
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.eval().full_sort_scores(batch()), model.full_sort_scores(batch()))


@pytest.mark.parametrize("config_class, fields, field", [
    (SASRecConfig, dict(n_heads=3), "n_heads"),  # 3 heads do not divide 64
    (SASRecConfig, dict(loss="hinge"), "loss"),
    (SASRecConfig, dict(n_items=1, loss="bce"), "loss"),
    (SASRecConfig, dict(dropout=1.0), "dropout"),
    (GRU4RecConfig, dict(n_items=0), "n_items"),
    (GRU4RecConfig, dict(max_history=0), "max_history"),
    (CaserConfig, dict(window=21), "window"),  # more than max_history = 20
    (CaserConfig, dict(n_users=-1), "n_users"),
    (BERT4RecConfig, dict(mask_prob=1.0), "mask_prob"),
    (ReaRecConfig, dict(reasoning_steps=-1), "reasoning_steps"),
    (ReaRecConfig, dict(variant="cot"), "variant"),
    (ReaRecConfig, dict(temperature=0.0), "temperature"),
    (ReaRecConfig, dict(temperature_scale=0.5), "temperature_scale"),
])
def test_impossible_configs_name_their_field(config_class, fields, field):
    with pytest.raises(GenrecConfigError) as error:
        config_class(**({"n_items": 10} | fields))
    assert error.value.field == field
