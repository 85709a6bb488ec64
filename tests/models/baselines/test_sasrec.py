"""SASRec's losses: full-softmax CE, and BCE with one sampled negative that is never the positive."""

import torch
import torch.nn.functional as F

from genrec_ml.models.sasrec import sample_negatives
from tests.models.baselines.tiny import BATCH, N_ITEMS, make_batch, tiny_model


def test_negatives_are_never_the_positive_and_cover_every_other_item():
    torch.manual_seed(0)
    positives = torch.arange(N_ITEMS).repeat(500)  # (6000,)
    negatives = sample_negatives(positives, N_ITEMS)
    assert ((negatives >= 0) & (negatives < N_ITEMS)).all()
    assert (negatives != positives).all()
    for item in (0, 5, N_ITEMS - 1):  # the edges of the shift included
        drawn = negatives[positives == item]
        assert set(drawn.tolist()) == set(range(N_ITEMS)) - {item}
        counts = torch.bincount(drawn, minlength=N_ITEMS).float()
        others = counts[torch.arange(N_ITEMS) != item]
        assert others.min() > 0.5 * others.mean()  # roughly uniform: 500 draws over 11 items


def test_bce_loss_scores_the_positive_against_one_seeded_negative():
    model = tiny_model("sasrec-bce")
    batch = make_batch(**BATCH)
    torch.manual_seed(3)
    logits, loss = model(batch)
    torch.manual_seed(3)
    negatives = sample_negatives(batch["target_items"], N_ITEMS)
    rows = torch.arange(3)
    expected = -(F.logsigmoid(logits[rows, batch["target_items"]]) + F.logsigmoid(-logits[rows, negatives])).mean()
    torch.testing.assert_close(loss, expected)
    torch.manual_seed(4)
    assert model(batch)[1] != loss  # another seed, other negatives


def test_ce_loss_is_the_cross_entropy_of_the_last_position():
    model = tiny_model("sasrec")
    batch = make_batch(**BATCH)
    logits, loss = model(batch)
    torch.testing.assert_close(loss, F.cross_entropy(logits, batch["target_items"]))
    hidden = model.encode(batch["history"])[:, -1]  # (B, d) the most recent item's state
    torch.testing.assert_close(logits, hidden @ model.item_embedding.weight[1:].T)
