"""The shared-memory beam decoder against HF's cached T5 decoder, step by step."""

from __future__ import annotations

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration
from transformers.cache_utils import EncoderDecoderCache

from genrec_ml.models.beam_decoder import BeamCache, decode_shared
from genrec_ml.models.tiger import _CACHE_ARG

USERS, WIDTH, S, D = 3, 4, 7, 16


def t5_decoder(feed_forward: str):
    config = T5Config(vocab_size=11, d_model=D, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=3, num_heads=4,
                      dropout_rate=0.1, feed_forward_proj=feed_forward, relative_attention_num_buckets=8,
                      relative_attention_max_distance=16)
    torch.manual_seed(0)
    return T5ForConditionalGeneration(config).eval().decoder


def hf_step(decoder, embeds, memory, mask, cache):
    out = decoder(inputs_embeds=embeds, encoder_hidden_states=memory, encoder_attention_mask=mask, use_cache=True,
                  **{_CACHE_ARG: cache})
    return out.last_hidden_state, getattr(out, _CACHE_ARG)


def padding_mask() -> torch.Tensor:
    mask = torch.ones(USERS, S, dtype=torch.long)
    mask[0, :3] = 0  # left padding, as the sequence dataset has
    mask[2, :5] = 0
    return mask


def additive(visible: torch.Tensor) -> torch.Tensor:
    return torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min)


@pytest.mark.parametrize("feed_forward", ["relu", "gated-gelu"])
@pytest.mark.parametrize("progressive", [False, True])
def test_matches_hf_cached_decoder_through_expansion_and_reorders(feed_forward, progressive):
    decoder = t5_decoder(feed_forward)
    memory = torch.randn(USERS, S, D)
    generator = torch.Generator().manual_seed(1)
    expand = torch.arange(USERS).repeat_interleave(WIDTH)  # level 0 -> WIDTH beams per user
    # later reorders move beams within each user's block, as beam search does
    within = [torch.cat([u * WIDTH + torch.randint(0, WIDTH, (WIDTH,), generator=generator) for u in range(USERS)])
              for _ in range(2)]
    ours, theirs = BeamCache.start(decoder, memory), None
    rows_of = torch.arange(USERS)  # user of each HF row
    for step, n in enumerate((1, 2, 2)):
        rows = USERS if step == 0 else USERS * WIDTH
        embeds = torch.randn(rows, n, D, generator=generator)
        if progressive:  # an additive (B, 1, n, S) mask, different per query row and user
            visible = torch.rand(USERS, 1, n, S, generator=generator) > 0.3
            visible[..., -1] = True
            user_mask = additive(visible)
        else:
            user_mask = padding_mask()
        hidden, ours = decode_shared(decoder, embeds, user_mask, ours)
        with torch.no_grad():
            expected, theirs = hf_step(decoder, embeds, memory[rows_of], user_mask[rows_of], theirs)
        torch.testing.assert_close(hidden, expected, atol=1e-5, rtol=1e-5)
        if step < 2:
            rows = expand if step == 0 else within[step - 1]
            ours = ours.reorder(rows)
            theirs.self_attention_cache.reorder_cache(rows)
            theirs.cross_attention_cache.reorder_cache(rows)
            rows_of = rows_of[rows]
    assert isinstance(theirs, EncoderDecoderCache) and ours.length == 5 and ours.users == USERS


def test_shares_one_memory_projection_per_user_and_refuses_training_mode():
    decoder = t5_decoder("relu")
    cache = BeamCache.start(decoder, torch.randn(USERS, S, D)).reorder(torch.arange(USERS).repeat_interleave(WIDTH))
    assert cache.cross_keys[0].shape[0] == USERS and cache.self_keys[0].shape[0] == USERS * WIDTH
    with pytest.raises(ValueError, match="user-major blocks"):
        decode_shared(decoder, torch.randn(USERS * WIDTH + 1, 1, D), padding_mask(), cache)
    decoder.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        decode_shared(decoder, torch.randn(USERS * WIDTH, 1, D), padding_mask(), cache)
