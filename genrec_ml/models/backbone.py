"""The decoder-only models' backbone: an HF causal LM and the tokenizer its prompts are written in.

- From scratch (the default): a `Qwen3ForCausalLM` built from the config, and the platform's own
  tokenizer (`genrec_ml.text.prompt.prompt_tokenizer`), whose SID token ids are `SidVocab`'s.
- Pretrained (`pretrained` = a local folder with `config.json`, the weights and a fast tokenizer, e.g.
  a Qwen3-0.6B checkpoint a user has; LASAR fine-tunes Qwen3-0.6B): loaded without the network
  (`local_files_only`), the SID tokens `<a_12>`, ... and <bot>/<eot> added to its tokenizer as whole
  tokens, the embeddings (and a tied output matrix) resized to the new vocabulary; the new rows start
  at the mean of the pretrained rows plus small noise, a common choice when adding tokens
  (transformers' own default draws them from the initialiser; the mean keeps the new tokens' logits
  in the range of the old ones). The architecture fields of the model config are read from the
  folder (`pretrained_fields`), so a checkpoint rebuilds the same shapes.

Either way `token_of` maps `SidVocab` ids (what the shared datasets hold: pad, eos, one block per
level) to the backbone's token ids: the identity from scratch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from genrec_ml.errors import GenrecConfigError
from genrec_ml.text.prompt import LATENT_END, LATENT_START, prompt_tokenizer, sid_token
from genrec_ml.vocab import BOS as EOS
from genrec_ml.vocab import PAD, SidVocab

# Qwen3/Llama-style config.json keys -> the decoder-only config's fields
_FIELDS = {"num_hidden_layers": "n_layers", "hidden_size": "d_model", "num_attention_heads": "n_heads",
           "num_key_value_heads": "n_kv_heads", "head_dim": "head_dim", "intermediate_size": "d_ff",
           "max_position_embeddings": "max_positions", "rope_theta": "rope_theta"}


@dataclass
class Backbone:
    lm: nn.Module  # an HF causal LM with `.model` (the decoder) and `.lm_head`
    tokenizer: object  # a `tokenizers.Tokenizer`
    token_of: Tensor  # (SidVocab size,) the backbone's token id of each SidVocab id
    eos: int  # the token that ends a generated text


def pretrained_fields(path: str) -> dict:
    """The architecture fields of the causal LM in folder `path` (its config.json), by the config's names."""
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise GenrecConfigError("pretrained", f"{path} holds no config.json: give the folder of a local causal-LM "
                                "checkpoint (the network is not used)")
    stored = json.loads(config_file.read_text())
    fields = {ours: stored[theirs] for theirs, ours in _FIELDS.items() if stored.get(theirs) is not None}
    if "head_dim" not in fields and "d_model" in fields and "n_heads" in fields:
        fields["head_dim"] = fields["d_model"] // fields["n_heads"]
    return fields


def build_backbone(config, vocab: SidVocab, scratch_lm) -> Backbone:
    """The backbone of `config` (a MiniOneRecConfig): `scratch_lm()` builds the from-scratch LM."""
    if not config.pretrained:
        tokenizer = prompt_tokenizer(vocab, config.text_words)
        return Backbone(scratch_lm(tokenizer.get_vocab_size()), tokenizer, torch.arange(vocab.size), EOS)
    return _pretrained(config.pretrained, vocab)


def _pretrained(path: str, vocab: SidVocab) -> Backbone:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if not hf_tokenizer.is_fast:
        raise GenrecConfigError("pretrained", f"the tokenizer in {path} is not a fast (HF tokenizers) one")
    sids = [sid_token(level, code) for level, size in enumerate(vocab.codebook_sizes) for code in range(size)]
    hf_tokenizer.add_tokens([*sids, LATENT_START, LATENT_END])
    lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, torch_dtype=torch.float32)
    old = lm.get_input_embeddings().weight.shape[0]
    lm.resize_token_embeddings(len(hf_tokenizer), mean_resizing=False)
    with torch.no_grad():  # new rows: the pretrained rows' mean plus noise of a tenth of their spread
        weight = lm.get_input_embeddings().weight
        generator = torch.Generator().manual_seed(0)
        noise = torch.randn(weight.shape[0] - old, weight.shape[1], generator=generator)
        weight[old:] = weight[:old].mean(dim=0) + 0.1 * weight[:old].std(dim=0) * noise
    eos = hf_tokenizer.eos_token_id
    if eos is None:
        raise GenrecConfigError("pretrained", f"the tokenizer in {path} has no eos token to end generated text")
    pad = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else eos
    token_of = torch.empty(vocab.size, dtype=torch.long)
    token_of[PAD], token_of[EOS] = pad, eos
    start = vocab.offsets[0]
    token_of[start:start + len(sids)] = torch.tensor(hf_tokenizer.convert_tokens_to_ids(sids))
    lm.config.use_cache = True
    return Backbone(lm, hf_tokenizer.backend_tokenizer, token_of, eos)
