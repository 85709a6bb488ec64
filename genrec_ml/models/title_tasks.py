"""MiniOneRec's item-identification tasks (its SFT mixes them into the next-item examples): title -> SID and
SID -> title, so that the backbone's text tokens and the SID tokens mean the same items (LASAR §2.3 needs
this: its anchors are the Stage-1 backbone reading CoT text).

    title -> SID:  <ALIGN_PREAMBLE> Which item has the title: <title> ?  ### Response:  <a_..><b_..>...
    SID -> title:  <ALIGN_PREAMBLE> What is the title of item " <a_..><b_..>... " ?  ### Response:  <title> <eos>

MiniOneRec adds one example per item and task to its training set (24k beside 131k next-item
examples on Beauty). Here each training step adds `title_batch` catalog items drawn uniformly (the
global torch generator, which checkpoints save: resumed runs draw the same) to both tasks; the loss
adds `title_weight` x (CE of the SID's levels, each over its own codes as the recommendation answer
+ the token mean of the title's CE over the whole vocabulary). A title keeps its first
`MAX_TITLE_TOKENS` tokens; a row's title padding sits inside the sequence, masked, positions not
counted, as LASAR's latent padding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec_ml.errors import GenrecDataError
from genrec_ml.text.prompt import ALIGN_PREAMBLE, SID_TO_TITLE, TITLE_TO_SID
from genrec_ml.vocab import PAD

MAX_TITLE_TOKENS = 32


class ItemTitles(nn.Module):
    """Every catalog item's title as token ids `(N_items, W)` PAD-padded, and the tasks' fixed prompt pieces."""

    def __init__(self, tokenizer, titles: list[str]):
        super().__init__()
        encoded = tokenizer.encode_batch([str(t) for t in titles], add_special_tokens=False)
        ids = [e.ids[:MAX_TITLE_TOKENS] for e in encoded]
        titled = [i for i, row in enumerate(ids) if row]
        if not titled:
            raise GenrecDataError("no item has a title: the title <-> SID tasks need titles", field="title")
        width = max(len(row) for row in ids)
        table = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            table[i, :len(row)] = row
        self.register_buffer("ids", torch.from_numpy(table), persistent=False)  # (N, W)
        self.register_buffer("lengths", torch.tensor([len(r) for r in ids]), persistent=False)  # (N,)
        # the items the tasks draw from: an item without a title takes no part (amazon-beauty: 1 of 12,101)
        self.register_buffer("titled", torch.tensor(titled), persistent=False)
        for name, text in (("preamble", ALIGN_PREAMBLE + TITLE_TO_SID[0]), ("title_end", TITLE_TO_SID[1]),
                           ("sid_start", ALIGN_PREAMBLE + SID_TO_TITLE[0]), ("sid_end", SID_TO_TITLE[1])):
            ids = tokenizer.encode(text, add_special_tokens=False).ids
            self.register_buffer(name, torch.tensor(ids), persistent=False)

    def draw(self, k: int) -> Tensor:
        """(k,) titled items, uniformly, from the global torch generator (saved in checkpoints)."""
        return self.titled[torch.randint(len(self.titled), (k,), device=self.titled.device)]


def title_task_losses(model, items: Tensor) -> tuple[Tensor, Tensor]:
    """`(title -> SID: mean CE over the SID's levels, SID -> title: mean CE over the title's tokens and <eos>)`
    for catalog items `items (k,)` under `model` (a MiniOneRec with `titles` and `item_sids` set)."""
    titles: ItemTitles = model.titles
    rows = items.shape[0]
    title, length = titles.ids[items], titles.lengths[items]  # (k, W), (k,)
    real = torch.arange(title.shape[1], device=items.device)[None, :] < length[:, None]  # (k, W)
    sids = model.item_sids[items]  # (k, L) codes
    codes = model.sid_tokens(sids)  # (k, L) token ids
    levels = sids.shape[1]

    def fixed(buffer: Tensor) -> tuple[Tensor, Tensor]:
        return buffer.expand(rows, -1), torch.ones(rows, len(buffer), dtype=torch.bool, device=items.device)

    # title -> SID: the answer's levels fill the last L columns
    parts = [fixed(titles.preamble), (title, real), fixed(titles.title_end),
             (codes[:, :-1], torch.ones_like(codes[:, :-1], dtype=torch.bool))]
    hidden = _run(model, parts)
    logits = model.level_logits(hidden[:, -levels:])  # (k, L, K_max)
    to_sid = F.cross_entropy(logits.flatten(0, 1).float(), sids.flatten())

    # SID -> title: the title, then <eos>, right after the prompt; column j of the response predicts token j
    response = torch.cat([title, torch.full_like(title[:, :1], PAD)], dim=1)  # (k, W + 1)
    response[torch.arange(rows, device=items.device), length] = model.eos
    answer_real = torch.arange(response.shape[1], device=items.device)[None, :] <= length[:, None]
    parts = [fixed(titles.sid_start), (codes, torch.ones_like(codes, dtype=torch.bool)), fixed(titles.sid_end),
             (response[:, :-1], answer_real[:, :-1])]
    hidden = _run(model, parts)
    predicting = hidden[:, -response.shape[1]:]  # (k, W + 1): the prompt's last token, then the response's
    scored = answer_real
    to_title = F.cross_entropy(model.lm.lm_head(predicting[scored]).float(), response[scored])
    return to_sid, to_title


def _run(model, parts: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Last hidden states `(k, T, d)` of the concatenated (ids, mask) parts; masked columns are padding."""
    from genrec_ml.models.minionerec import positions

    ids = torch.cat([p[0] for p in parts], dim=1)
    mask = torch.cat([p[1] for p in parts], dim=1)
    return model.lm.model(input_ids=ids.masked_fill(~mask, PAD), attention_mask=mask.long(),
                          position_ids=positions(mask)).last_hidden_state
