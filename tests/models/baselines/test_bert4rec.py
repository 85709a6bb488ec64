"""BERT4Rec's Cloze masking, its loss over masked positions, and attention in both directions."""

import torch
import torch.nn.functional as F

from genrec_ml.models.bert4rec import IGNORE
from tests.models.baselines.tiny import BATCH, N_ITEMS, make_batch, tiny_model


def random_histories(n: int, T: int = 10):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, T + 1, (n,), generator=g)  # (n,)
    items = torch.randint(1, N_ITEMS + 1, (n, T), generator=g)  # (n, T)
    history = torch.where(torch.arange(T)[None, :] >= T - lengths[:, None], items, 0)  # left-padded
    return history, torch.randint(0, N_ITEMS, (n,), generator=g)


def test_training_masks_mask_prob_of_real_items_and_always_the_appended_target():
    model = tiny_model("bert4rec", mask_prob=0.2).train()
    history, targets = random_histories(2000)
    torch.manual_seed(0)
    inputs, labels = model.mask_items(history, targets)  # (B, T + 1) each
    mask = model.mask_token
    body, body_labels = inputs[:, :-1], labels[:, :-1]
    masked = body == mask
    real = history != 0
    assert abs(masked[real].float().mean().item() - 0.2) < 0.02
    assert not masked[~real].any() and (body[~real] == 0).all()  # padding is never masked
    assert torch.equal(body[~masked], history[~masked])  # everything else is the history, unchanged
    assert (inputs[:, -1] == mask).all() and torch.equal(labels[:, -1], targets)
    assert torch.equal(body_labels != IGNORE, masked)  # labels exactly on the masked positions
    assert torch.equal(body_labels[masked], history[masked] - 1)  # holding the 0-based item


def test_eval_mode_masks_only_the_appended_position():
    model = tiny_model("bert4rec")
    history, targets = random_histories(50)
    inputs, labels = model.mask_items(history, targets)
    assert torch.equal(inputs[:, :-1], history)
    assert (labels[:, :-1] == IGNORE).all()


def test_the_loss_predicts_every_masked_item():
    model = tiny_model("bert4rec", mask_prob=0.5).train()
    batch = make_batch(**BATCH)
    torch.manual_seed(1)
    _, loss = model(batch)
    torch.manual_seed(1)
    inputs, labels = model.mask_items(batch["history"], batch["target_items"])
    assert (labels[:, :-1] != IGNORE).sum() > 0  # the seed masks some history too
    logits = model.item_logits(model.encode(inputs))  # (B, T + 1, N)
    torch.testing.assert_close(loss, F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE))


def test_attention_runs_both_ways():
    model = tiny_model("bert4rec")
    history = make_batch(**BATCH)["history"]
    changed = history.clone()
    changed[2, -1] = 1 if history[2, -1] != 1 else 2  # the most recent item
    first = model.encode(history)[2, 0]
    assert (model.encode(changed)[2, 0] - first).abs().max() > 1e-5 * first.abs().max()
