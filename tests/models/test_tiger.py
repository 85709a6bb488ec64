"""TIGER: shapes, per-level loss, beam search against brute force, KV cache against full forward."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genrec_ml.data.sequences import SequenceDataset, collate
from genrec_ml.decoding import Trie, brute_force_topk, teacher_forced_log_probs
from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.tiger import PROFILES, Tiger, TigerConfig, tiger_config
from tests.models.tiny import SIZES, catalog, examples, tiny_model

N_ITEMS = 30


def make_batch(model, n_users=4, seed=0):
    sids = catalog(N_ITEMS)
    data = SequenceDataset(examples(n_users, N_ITEMS, seed=seed), sids, model.vocab)
    return collate([data[i] for i in range(n_users)]), sids


class WithExtraVectors(Tiger):
    """Two learned vectors after every level's input token: the simplest use of the hook."""

    def __init__(self, config):
        super().__init__(config)
        self.extra = nn.Parameter(torch.randn(self.vocab.n_levels, 2, config.d_model))

    def extra_decoder_embeds(self, level, rows, memory, memory_mask):
        return self.extra[level].expand(rows, -1, -1)  # (R, 2, d)


def test_forward_shapes_and_per_level_padding():
    model = tiny_model()
    batch, _ = make_batch(model)
    logits, loss = model(batch)
    assert logits.shape == (4, len(SIZES), max(SIZES))
    # K = (3, 4, 3): code 3 exists only at level 1
    assert torch.isneginf(logits[:, [0, 2], 3]).all()
    assert torch.isfinite(logits[:, 1]).all() and torch.isfinite(logits[:, :, :3]).all()
    expected = F.cross_entropy(logits.reshape(-1, 4), batch["targets"].reshape(-1))
    assert loss.shape == () and torch.allclose(loss, expected)


def add_to_vocab_logits(model, position, token_ids, amount):
    """Forward hook on the output layer adding `amount` to `token_ids` at decoder `position`."""

    def hook(module, inputs, output):
        output = output.clone()
        output[:, position, token_ids] += amount
        return output

    return model.t5.lm_head.register_forward_hook(hook)


def test_a_logit_outside_a_levels_block_never_affects_the_loss():
    model = tiny_model()
    batch, _ = make_batch(model)
    logits, loss = model(batch)
    vocab = model.vocab
    for level in range(vocab.n_levels):
        own = range(vocab.size)[vocab.level_slice(level)]
        others = [t for t in range(vocab.size) if t not in own]  # other levels, specials, users
        handle = add_to_vocab_logits(model, level, others, 1e4)
        shifted_logits, shifted_loss = model(batch)
        handle.remove()
        assert torch.equal(shifted_loss, loss)
        assert torch.equal(shifted_logits, logits)
        # the same push on one code of the level's own block does move the loss: the hook bites
        handle = add_to_vocab_logits(model, level, [own[0]], 1e4)
        _, pushed_loss = model(batch)
        handle.remove()
        assert pushed_loss > loss + 1


@pytest.mark.parametrize("cls", [Tiger, WithExtraVectors])
def test_recommend_with_a_wide_beam_equals_brute_force(cls):
    model = tiny_model(seed=1, cls=cls)
    batch, sids = make_batch(model)
    trie = Trie.from_sids(sids, model.vocab.codebook_sizes)
    items, log_probs = model.recommend(batch, trie, beam_width=N_ITEMS, top_k=N_ITEMS)
    ref_items, ref_log_probs = brute_force_topk(
        lambda s: teacher_forced_log_probs(model.stepper(batch), s, 4), sids, N_ITEMS
    )
    assert torch.equal(items, ref_items)
    assert torch.allclose(log_probs, ref_log_probs, atol=1e-4)
    assert set(items[0].tolist()) == set(range(N_ITEMS))


@pytest.mark.parametrize("cls", [Tiger, WithExtraVectors])
def test_kv_cache_steps_match_the_full_decoder_forward(cls):
    model = tiny_model(seed=2, cls=cls)
    batch, _ = make_batch(model, n_users=4)
    rows = torch.tensor([2, 0, 0, 3, 1, 2])  # duplicated and permuted, as beam expansion does
    permuted = {k: v[rows] for k, v in batch.items()}
    logits, _ = model(permuted)
    expected = logits.log_softmax(-1)  # (R, L, K_max)
    targets = permuted["targets"]
    stepper = model.stepper(batch)
    state = stepper.start(4)
    with torch.no_grad():
        log_probs, state = stepper.step(state, torch.zeros(4, 0, dtype=torch.long))
        assert torch.allclose(log_probs, model(batch)[0].log_softmax(-1)[:, 0, : SIZES[0]], atol=1e-5)
        state = stepper.reorder(state, rows)
        for level in range(1, len(SIZES)):
            log_probs, state = stepper.step(state, targets[:, :level])
            assert torch.allclose(log_probs, expected[:, level, : SIZES[level]], atol=1e-5)
            state = stepper.reorder(state, torch.arange(len(rows)))


def test_extra_decoder_vectors_enter_the_decoder_and_set_the_read_positions():
    model = tiny_model(seed=3, cls=WithExtraVectors)
    batch, _ = make_batch(model)
    memory = model.encode(batch["input_ids"], batch["attention_mask"])
    embeds, readout = model.decoder_inputs(batch["targets"], memory, batch["attention_mask"])
    assert embeds.shape == (4, 3 * len(SIZES), model.config.d_model)
    assert readout.tolist() == [2, 5, 8]
    assert torch.equal(embeds[:, 1:3], model.extra[0].expand(4, -1, -1))
    before, _ = model(batch)
    with torch.no_grad():
        model.extra[1].add_(1.0)
    after, _ = model(batch)
    assert torch.equal(after[:, 0], before[:, 0])  # level 0 is read before level 1's vectors
    assert not torch.allclose(after[:, 1], before[:, 1])


def test_recommend_runs_without_dropout_and_restores_training_mode():
    model = tiny_model(seed=4, dropout=0.5).train()
    batch, sids = make_batch(model)
    trie = Trie.from_sids(sids, model.vocab.codebook_sizes)
    first = model.recommend(batch, trie, beam_width=8, top_k=5)
    second = model.recommend(batch, trie, beam_width=8, top_k=5)
    assert model.training
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert (first[0] >= 0).all() and (first[1][:, :-1] >= first[1][:, 1:]).all()


def test_profiles_match_the_paper_and_build():
    paper = PROFILES["paper"]
    assert (paper.n_encoder_layers, paper.n_decoder_layers, paper.d_model, paper.n_heads, paper.d_kv) == (
        4, 4, 128, 6, 64)
    assert (paper.d_ff, paper.dropout) == (1024, 0.1)
    model = Tiger(tiger_config("paper", (256, 256, 256, 4)))
    assert model.vocab.size == 2 + 3 * 256 + 4 + 2000
    assert model.t5.config.num_layers == 4 and model.t5.config.num_decoder_layers == 4
    assert dataclasses.asdict(model.config)["codebook_sizes"] == (256, 256, 256, 4)


def test_bad_configs_name_the_field():
    with pytest.raises(GenrecConfigError, match="d_model"):
        TigerConfig(d_model=0)
    with pytest.raises(GenrecConfigError, match="dropout"):
        TigerConfig(dropout=1.0)
    with pytest.raises(GenrecConfigError, match="profile"):
        tiger_config("huge", SIZES)
