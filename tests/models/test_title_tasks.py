"""MiniOneRec's title <-> SID tasks: each task's loss = the plain LM on the unpadded sequence, a few steps learn
them, items without a title are never drawn, and a run without titles is refused by name."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genrec_ml.errors import GenrecConfigError
from genrec_ml.experiments import Catalog, Experiment, build_experiment_model
from genrec_ml.models.minionerec import MiniOneRec, MiniOneRecConfig
from genrec_ml.models.title_tasks import title_task_losses
from genrec_ml.text.prompt import ALIGN_PREAMBLE, SID_TO_TITLE, TITLE_TO_SID
from genrec_ml.vocab import BOS as EOS
from tests.models.test_minionerec import SIDS, SIZES, TINY, fit

TITLES = ["red lip gloss", "nail polish", "", "a much longer title of an eye liner pencil", "mascara", "balm", "oil"]


def tiny(seed: int = 0) -> MiniOneRec:
    torch.manual_seed(seed)
    model = MiniOneRec(MiniOneRecConfig(codebook_sizes=SIZES, **{**TINY, "title_tasks": True, "title_batch": 4},
                                        text_words=("red", "lip", "gloss", "nail"))).eval()
    model.set_item_titles(TITLES, SIDS)
    return model


def test_each_task_is_the_plain_language_model_loss_of_its_unpadded_sequence():
    model = tiny()
    items = torch.tensor([3, 0, 1])
    to_sid, to_title = title_task_losses(model, items)
    encode = lambda text: model.tokenizer.encode(text).ids  # noqa: E731
    sid_ce, title_ce, title_tokens = [], [], 0
    for item in items.tolist():
        title, codes = encode(TITLES[item]), model.vocab.code_tokens(SIDS[item]).tolist()
        prompt = encode(ALIGN_PREAMBLE + TITLE_TO_SID[0]) + title + encode(TITLE_TO_SID[1])
        hidden = model.lm.model(input_ids=torch.tensor([prompt + codes[:-1]])).last_hidden_state[0]
        logits = model.level_logits(hidden[None, -len(codes):])[0]
        sid_ce.append(F.cross_entropy(logits, SIDS[item], reduction="sum"))
        prompt = encode(ALIGN_PREAMBLE + SID_TO_TITLE[0]) + codes + encode(SID_TO_TITLE[1])
        hidden = model.lm.model(input_ids=torch.tensor([prompt + title])).last_hidden_state[0]
        logits = model.lm.lm_head(hidden[len(prompt) - 1:])
        title_ce.append(F.cross_entropy(logits, torch.tensor(title + [EOS]), reduction="sum"))
        title_tokens += len(title) + 1
    assert torch.allclose(to_sid, torch.stack(sid_ce).sum() / (3 * len(SIZES)), atol=1e-5)
    assert torch.allclose(to_title, torch.stack(title_ce).sum() / title_tokens, atol=1e-5)


def test_training_steps_add_both_tasks_and_learn_them_and_untitled_items_are_never_drawn():
    model = tiny(seed=1).train()
    assert set(model.titles.draw(500).tolist()) == {0, 1, 3, 4, 5, 6}  # item 2 has no title
    batch = {"input_ids": model.vocab.code_tokens(SIDS[[0, 1]]).flatten()[None].expand(2, -1),
             "attention_mask": torch.ones(2, 2 * len(SIZES), dtype=torch.bool), "targets": SIDS[[4, 5]]}
    before = fit(model, batch, 40)
    items = torch.tensor([0, 1, 3, 4, 5, 6])
    with torch.no_grad():
        to_sid, to_title = title_task_losses(model, items)
    assert to_sid < 0.5 * before["title_to_sid"] and to_title < 0.5 * before["sid_to_title"], (before, to_sid)
    model.eval()
    _, plain = model(batch)  # evaluation mode: the next-item loss alone
    assert torch.allclose(plain, MiniOneRec.forward(model.eval(), batch)[1])


def test_a_run_without_titles_is_refused_by_name():
    catalog = Catalog(n_items=len(SIDS), sids=SIDS.numpy(), codebook_sizes=SIZES)
    run = Experiment(model="minionerec", tokenizer="rq_kmeans_4x256", model_overrides={**TINY, "title_tasks": True})
    with pytest.raises(GenrecConfigError, match="title <-> SID"):
        build_experiment_model(run, catalog)
    titled = Catalog(n_items=len(SIDS), sids=SIDS.numpy(), codebook_sizes=SIZES, titles=tuple(TITLES))
    model = build_experiment_model(run, titled)
    assert np.array_equal(model.item_sids.numpy(), SIDS.numpy()) and model.titles.ids.shape[0] == len(TITLES)
    bare = MiniOneRec(MiniOneRecConfig(codebook_sizes=SIZES, **{**TINY, "title_tasks": True})).train()
    batch = {"input_ids": torch.zeros(1, 3, dtype=torch.long) + 2, "attention_mask": torch.ones(1, 3, dtype=bool),
             "targets": SIDS[:1]}
    with pytest.raises(GenrecConfigError, match="set_item_titles"):
        bare(batch)
