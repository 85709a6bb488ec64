"""The explicit-CoT baseline: the reasoning response's layout by hand, its loss = the plain LM on each row's
unpadded sequence, a row alone = padded among longer CoTs, the CoT text dataset against its per-example
path, the written CoT (reasoning mode) = greedy decoding by recomputation, beam search after it = brute
force, and a few steps of SFT learning both modes."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from genrec_ml.data.cot_sequences import CotTextSequenceDataset, attach_cot_texts, attach_supervision
from genrec_ml.decoding import Trie, constrained_beam_search
from genrec_ml.decoding.beam_search import brute_force_topk, teacher_forced_log_probs
from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.models.explicit_cot import IGNORE, ExplicitCot, ExplicitCotConfig
from genrec_ml.models.minionerec import MiniOneRec, MiniOneRecConfig
from genrec_ml.models.registry import model_config
from genrec_ml.vocab import PAD
from tests.models.test_minionerec import SIDS, SIZES, TINY, batch_of, fit

HISTORIES, TARGETS = [[0, 5, 3], [4], [6, 6, 1, 2]], [2, 1, 0]
TEXTS = ["Evidence: two items.", "", "Intent: the next item likely carries it."]


def tiny(seed: int = 0, **settings) -> ExplicitCot:
    torch.manual_seed(seed)
    return ExplicitCot(ExplicitCotConfig(codebook_sizes=SIZES, **TINY, **settings)).eval()


def cot_batch(model, histories=HISTORIES, targets=TARGETS, texts=TEXTS, max_tokens=None) -> dict:
    examples = pd.DataFrame({"user_index": range(len(histories)), "target_item_index": targets,
                             "history": [np.array(h) for h in histories], "cot_text": texts})
    return CotTextSequenceDataset(examples, SIDS, model.vocab, encode=model.encode_texts,
                                  max_tokens=max_tokens).batch(np.arange(len(histories)))


def test_the_reasoning_response_puts_the_cot_then_padding_then_eot_and_the_answer():
    model = tiny()
    batch = cot_batch(model)
    tokens, mask, text_targets = model.reasoning_response(batch)
    ids = [model.encode_texts([t])[0] for t in TEXTS]
    width = max(len(i) for i in ids)
    answer = model.vocab.code_tokens(SIDS[TARGETS][:, :-1])
    assert tokens.shape == (3, 1 + width + 1 + 2) and torch.equal(tokens[:, -2:], answer)
    for row, cot in enumerate(ids):
        n = len(cot)
        assert tokens[row, 0] == model.cot_start and tokens[row, 1:1 + n].tolist() == cot
        assert (tokens[row, 1 + n:1 + width] == PAD).all() and tokens[row, 1 + width] == model.cot_end
        assert mask[row].tolist() == [True] * (1 + n) + [False] * (width - n) + [True] * 3
        assert text_targets[row].tolist() == cot + [model.cot_end] + [IGNORE] * (width - n)


def test_the_reasoning_loss_is_the_plain_lm_loss_of_each_unpadded_sequence():
    model = tiny(seed=1)
    batch = cot_batch(model)
    text, answer, counts = model.reasoning_terms(batch)
    ids, mask = model.prompt(batch["input_ids"], batch["attention_mask"])
    for row, words in enumerate(TEXTS):
        cot = model.encode_texts([words])[0]
        if not cot:  # no CoT: the row learns the direct mode only
            assert text[row] == 0 and answer[row] == 0
            continue
        target = SIDS[TARGETS[row]]
        response = torch.tensor([model.cot_start, *cot, model.cot_end, *model.vocab.code_tokens(target[:-1]).tolist()])
        sequence = torch.cat([ids[row][mask[row]], response])
        hidden = model.lm.model(input_ids=sequence[None]).last_hidden_state[0]
        start = len(sequence) - len(response)  # <bot>'s position predicts c_1
        text_logits = model.lm.lm_head(hidden[start:start + len(cot) + 1])
        expected_text = F.cross_entropy(text_logits, torch.tensor([*cot, model.cot_end]), reduction="sum")
        level_logits = model.level_logits(hidden[None, -3:])[0]  # <eot> and the answer's first two codes
        expected_answer = F.cross_entropy(level_logits, target, reduction="sum")
        assert torch.allclose(text[row], expected_text, atol=1e-4)
        assert torch.allclose(answer[row], expected_answer, atol=1e-4)
    assert counts.tolist() == [sum(len(model.encode_texts([t])[0]) + 1 for t in TEXTS if t), 2 * 3]
    _, loss = model(batch)
    _, direct = MiniOneRec.forward(model, batch)
    assert torch.allclose(loss, direct + (text.sum() + answer.sum()) / counts.sum(), atol=1e-5)
    assert set(model.loss_parts) == {"direct", "cot_text", "cot_answer"}


def test_a_row_alone_equals_the_same_row_padded_among_longer_cots():
    model = tiny(seed=2)
    alone = model.reasoning_terms(cot_batch(model, [[4]], [1], ["Evidence: two items."]))
    together = model.reasoning_terms(cot_batch(model, [[4], [0, 5, 3, 6, 2]], [1, 2],
                                               ["Evidence: two items.", "A much longer chain of thought, " * 4]))
    assert torch.allclose(alone[0][0], together[0][0], atol=1e-5)
    assert torch.allclose(alone[1][0], together[1][0], atol=1e-5)


def test_the_cot_dataset_batch_equals_its_examples_and_cuts_long_cots():
    model = tiny()
    examples = pd.DataFrame({"user_index": [0, 1, 2], "target_item_index": TARGETS,
                             "history": [np.array(h) for h in HISTORIES], "cot_text": TEXTS})
    data = CotTextSequenceDataset(examples, SIDS, model.vocab, encode=model.encode_texts, max_tokens=5)
    batch = data.batch(np.array([2, 0, 1]))
    for row, i in enumerate([2, 0, 1]):
        expected = model.encode_texts([TEXTS[i]])[0][:5]
        assert data[i]["cot_ids"].tolist() == expected
        assert batch["cot_lengths"][row] == len(expected)
        assert batch["cot_ids"][row].tolist() == expected + [PAD] * (5 - len(expected))


def test_cot_texts_join_onto_training_examples_and_bad_rows_are_named():
    examples = pd.DataFrame({"user_index": [0, 0, 1], "target_position": [1, 2, 1], "target_item_index": [1, 2, 3],
                             "history": [np.array([0]), np.array([0, 1]), np.array([4])]})
    cot = pd.DataFrame({"user_index": [0, 1], "target_position": [2, 1], "segments": [["a b.", "c."], ["d."]]})
    joined = attach_supervision(examples, cot)
    assert joined["cot_text"].tolist() == ["", "a b. c.", "d."]
    with pytest.raises(GenrecDataError, match="target_position"):
        attach_cot_texts(examples.drop(columns="target_position"), cot)
    with pytest.raises(GenrecDataError, match="neither anchors nor segments"):
        attach_supervision(examples, cot.drop(columns="segments"))


def test_the_written_cot_is_greedy_decoding_and_the_search_after_it_is_brute_force():
    model = tiny(seed=3, max_cot_tokens=6, inference="generate")
    batch = batch_of(model, HISTORIES, TARGETS)
    cot, lengths, _ = model.write_cot(batch["input_ids"], batch["attention_mask"])
    ids, mask = model.prompt(batch["input_ids"], batch["attention_mask"])
    for row in range(3):  # the plain reference: recompute the whole sequence for every token
        sequence, written = torch.cat([ids[row][mask[row]], torch.tensor([model.cot_start])]), []
        for _ in range(6):
            logits = model.lm(input_ids=sequence[None]).logits[0, -1].masked_fill(~model.text_allowed, float("-inf"))
            token = int(logits.argmax())
            sequence = torch.cat([sequence, torch.tensor([token])])
            if token == model.cot_end:
                break
            written.append(token)
        assert cot[row, :lengths[row]].tolist() == written and (cot[row, lengths[row]:] == PAD).all()
        assert model.cot_start not in written and all(t >= model.text_allowed.nonzero()[0] for t in written)
    trie = Trie.from_sids(SIDS, SIZES)
    items, scores = constrained_beam_search(model.stepper(batch), trie, 3, 7, 5)
    reference, reference_scores = brute_force_topk(lambda s: teacher_forced_log_probs(model.stepper(batch), s, 3),
                                                   SIDS, 5)
    assert torch.equal(items, reference) and torch.allclose(scores, reference_scores, atol=1e-5)
    # direct inference is MiniOneRec's search on the same weights, and differs from the reasoning mode's
    direct = ExplicitCot(ExplicitCotConfig(codebook_sizes=SIZES, **TINY)).eval()
    direct.load_state_dict(model.state_dict())
    direct_items, direct_scores = constrained_beam_search(direct.stepper(batch), trie, 3, 7, 5)
    plain, plain_scores = constrained_beam_search(MiniOneRec.stepper(direct, batch), trie, 3, 7, 5)
    assert torch.equal(direct_items, plain) and torch.allclose(direct_scores, plain_scores)
    assert not torch.allclose(direct_scores, scores, atol=1e-3)


def test_a_few_steps_of_sft_lower_both_modes_losses():
    model = tiny(seed=4).train()
    batch = cot_batch(model)
    before = fit(model, batch, 30)
    model(batch)
    after = model.loss_parts
    assert all(after[k] < 0.5 * before[k] for k in ("direct", "cot_text", "cot_answer")), (before, after)


def test_config_and_profiles():
    with pytest.raises(GenrecConfigError, match="inference"):
        ExplicitCotConfig(inference="sample")
    with pytest.raises(GenrecConfigError, match="max_cot_tokens"):
        ExplicitCotConfig(max_cot_tokens=0)
    stage1 = model_config("minionerec", "cpu", {"codebook_sizes": (256,) * 4 + (4,), "n_items": 10})
    config = model_config("explicit_cot", "cpu", {"codebook_sizes": (256,) * 4 + (4,), "n_items": 10})
    assert (config.n_layers, config.d_model, config.d_ff) == (stage1.n_layers, stage1.d_model, stage1.d_ff)
    assert isinstance(stage1, MiniOneRecConfig) and config.max_positions >= 1024
