"""A local pretrained causal-LM folder as the decoder-only backbone: its architecture read from config.json, its
weights kept, SID and latent tokens added to its tokenizer as whole tokens, the datasets' SidVocab ids mapped to
them; the cached paths = the plain references, beam search = brute force, a checkpoint rebuilds it, training
lowers the loss, LASAR's loop runs on it, and a folder without a config is refused by name."""

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from genrec_ml.decoding import Trie, constrained_beam_search
from genrec_ml.decoding.beam_search import brute_force_topk, teacher_forced_log_probs
from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.lasar import Lasar, LasarConfig
from genrec_ml.models.minionerec import MiniOneRec, MiniOneRecConfig
from genrec_ml.models.registry import build_model
from genrec_ml.text.prompt import AFTER_HISTORY, ALIGN_PREAMBLE, PREAMBLE, SID_TO_TITLE, TITLE_TO_SID, sid_token
from genrec_ml.train.checkpoint import model_payload
from tests.models.test_minionerec import SIDS, SIZES, batch_of, fit

HISTORIES, TARGETS = [[0, 5, 3], [4], [6, 6, 1, 2]], [2, 1, 0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny Qwen3 checkpoint with a word-level fast tokenizer, saved the way HF saves any model."""
    path = tmp_path_factory.mktemp("tiny-qwen3")
    split = pre_tokenizers.Whitespace()
    text = " ".join([PREAMBLE, AFTER_HISTORY, ALIGN_PREAMBLE, *TITLE_TO_SID, *SID_TO_TITLE, "red lip gloss mascara"])
    words = dict.fromkeys(["<unk>", "<|endoftext|>", ",", *[piece for piece, _ in split.pre_tokenize_str(text)]])
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = split
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", eos_token="<|endoftext|>",
                            pad_token="<|endoftext|>").save_pretrained(path)
    torch.manual_seed(0)
    Qwen3ForCausalLM(Qwen3Config(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=256,
                                 tie_word_embeddings=True)).save_pretrained(path)
    return path


def pretrained(folder, cls=MiniOneRec, config_class=MiniOneRecConfig, **settings):
    return cls(config_class(codebook_sizes=SIZES, pretrained=str(folder), title_tasks=False, **settings)).eval()


def test_the_folder_gives_the_architecture_and_keeps_its_weights_and_sid_tokens_are_whole_tokens(folder):
    model = pretrained(folder)
    config = model.config
    assert (config.n_layers, config.d_model, config.n_heads, config.n_kv_heads, config.head_dim, config.d_ff) == \
        (2, 16, 2, 1, 8, 32)
    stored = Qwen3ForCausalLM.from_pretrained(folder).get_input_embeddings().weight
    ours = model.lm.get_input_embeddings().weight
    assert ours.shape[0] == stored.shape[0] + sum(SIZES) + 2  # every SID token, <bot>, <eot>
    assert torch.equal(ours[:stored.shape[0]], stored)
    assert model.lm.lm_head.weight.data_ptr() == ours.data_ptr()  # still tied
    text = "".join(sid_token(level, int(code)) for level, code in enumerate(SIDS[3]))
    assert model.tokenizer.encode(text, add_special_tokens=False).ids == model.sid_tokens(SIDS[3]).tolist()
    assert model.token_of[1] == model.eos == model.tokenizer.token_to_id("<|endoftext|>")


def test_the_cached_paths_equal_the_references_and_beam_search_is_brute_force(folder):
    model = pretrained(folder)
    batch = batch_of(model, HISTORIES, TARGETS)
    logits, _ = model(batch)
    assert torch.allclose(logits, model.forward_reference(batch), atol=1e-5)
    trie = Trie.from_sids(SIDS, SIZES)
    items, scores = constrained_beam_search(model.stepper(batch), trie, 3, 7, 5)
    reference, reference_scores = brute_force_topk(lambda s: teacher_forced_log_probs(model.stepper(batch), s, 3),
                                                   SIDS, 5)
    assert torch.equal(items, reference) and torch.allclose(scores, reference_scores, atol=1e-5)
    rebuilt = build_model("minionerec", model_payload(model)["model_config"])
    rebuilt.load_state_dict(model.state_dict())
    assert torch.allclose(rebuilt.eval()(batch)[0], logits)


def test_fine_tuning_lowers_the_loss_and_lasar_runs_its_loop_on_the_same_backbone(folder):
    model = pretrained(folder).train()
    batch = batch_of(model, HISTORIES, TARGETS)
    model(batch)
    before = model(batch)[1].item()
    fit(model, batch, 30)
    assert model(batch)[1].item() < 0.5 * before
    lasar = pretrained(folder, Lasar, LasarConfig, max_steps=3)
    steps = torch.tensor([2, 0, 3])
    logits, _ = lasar(batch, steps=steps)
    reference, _ = lasar.forward_reference(batch, steps=steps)
    assert torch.allclose(logits, reference, atol=1e-5)


def test_a_folder_without_a_config_is_refused_by_name(tmp_path):
    with pytest.raises(GenrecConfigError, match="config.json"):
        MiniOneRecConfig(pretrained=str(tmp_path))
