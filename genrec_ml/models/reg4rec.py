"""REG4Rec (§3): an encoder-decoder over unordered MPQ token sets, decoded most-confident-codebook first.

An item is M tokens, one from each of M parallel MPQ codebooks (`genrec_ml.tokenizers.mpq`), plus the
disambiguation code the codebook asset appends to items sharing all M. The vocabulary is TIGER's
(`SidVocab`): codebook k owns block k, so a token id names its codebook and a history item's M
tokens are a true set (their order in the encoder input, expert order, carries nothing but T5's
relative positions).

Encoder: the token sets of the history items, oldest first, after TIGER's user token (the paper
does not say what precedes the history; we keep TIGER's input so the SID models read the same
batches).

Decoder, one step per token: the input at step j is BOS (j = 0) or the token chosen at step j-1, and
step j's output is scored against every codebook: `log_probs[k] = log_softmax(logits of block k)`, a
distribution over codebook k's codes. Which codebook step j fills is the *order*:

- pre-training (eq. 6-7): teacher forcing in a random permutation of the M codebooks per example and
  step (the disambiguation code last), loss = mean CE of each step's codebook at its true code, so
  any open codebook may come next at inference; plus the category head (a linear map of the same
  decoder state to the G item categories) at every step, trained on the target item's category:
  L = L_token + category_weight * L_cate. The paper gives no weight; 1 keeps both terms O(1).
- inference: CRSS (`genrec_ml.decoding.crss`): every open codebook is scored, the most confident
  fills first; CORP prunes paths whose category distributions drift (JS > θ between steps).
- `dynamic_order=False` ("w/o CRSS", and "w/o MPQ" on RQ-VAE codes): codebooks 0, 1, ..., M-1 in
  training and decoding.

Category labels come from the catalog (`Catalog.categories`: each item's `items.category`, the
first entry of its category list, factorised; amazon-beauty: its first attribute id, synthetic: the
root of the category tree). PARS post-training (§3.4.2-3.4.3) lives in `genrec_ml.rl.pars`; its
settings are fields here so a checkpoint says how it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrec_ml.decoding.crss import Corp, SearchStats, SetSearchResult, crss_beam_search
from genrec_ml.decoding.token_sets import TokenSetConstraint
from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.tiger import Tiger, TigerConfig, TigerState, TigerStepper
from genrec_ml.vocab import BOS

PARS_PATHS = ("sample", "catalog", "beam")


@dataclass(frozen=True)
class Reg4RecConfig(TigerConfig):
    # REG4Rec §4.1: 1 encoder + 2 decoder layers, input dimension 128, hidden size 640; heads are not
    # given, 4 x 32 keeps n_heads * d_kv = d_model
    codebook_sizes: tuple[int, ...] = (300,) * 8 + (8,)  # M = 8 codebooks x D = 300, then disambiguation
    n_encoder_layers: int = 1
    n_decoder_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_kv: int = 32
    d_ff: int = 640
    n_items: int = 1  # catalog size: the item -> category table is a buffer of the checkpoint
    n_categories: int = 1  # G: distinct `items.category` values, from the catalog
    dynamic_order: bool = True  # False = "w/o CRSS": codebooks in fixed order
    category_weight: float = 1.0  # weight of L_cate (eq. 7); paper silent
    corp: bool = True  # False = "w/o CORP"
    corp_threshold: float = 0.06  # θ
    corp_every: int = 1  # s: the paper leaves it open; 1 checks consecutive steps as eq. 13 does
    # CRSS scores each open codebook's codes renormalised over the codes the catalog still allows
    # (genrec_ml.decoding.crss: forced codes add 0, not the model's guess); paper silent
    renormalise: bool = False
    # PARS post-training (genrec_ml.rl.pars); 0 steps = "w/o PARS"
    pars_steps: int = 200
    pars_users: int = 64  # users per GRPO step
    pars_group: int = 8  # G sampled paths per user (paper silent; TRL's default)
    pars_lr: float = 1e-4  # AdamW, constant (paper silent)
    pars_epsilon: float = 0.15  # clip range ε (§4.1)
    pars_kl_beta: float = 0.04  # KL weight to the pre-trained reference (paper silent; DeepSeekMath)
    # eq. 8 divides by the group's reward std; False only centres (Dr. GRPO; genrec_ml.rl.grpo)
    pars_scale_rewards: bool = True
    # How PARS draws its G paths per user (paper silent: "exploring multiple potential paths"):
    # "sample" = from the policy, any token set; "catalog" = sampled among catalog items only;
    # "beam" = the top G of CRSS beam search as inference decodes (MiniOneRec's and LASAR's GRPO
    # groups are beam-searched candidates). See `Reg4Rec.rollouts`. "beam", because sampled groups
    # carry no signal while the policy is this flat: on `synthetic` (cpu profile, 4 epochs, then PARS)
    # sampled paths scored a step reward of .005, a random token's 1/300, in either sampling mode, and
    # validation NDCG@10 (1,000 users) fell .0450 -> .0405 / .0440 (sampled, steps 25 / 50) and
    # -> .0451 / .0401 (among items), as PARS collapsed on amazon-beauty; with beam paths it stayed at
    # or above .0450 for 100 steps (.0498 / .0497 / .0522 / .0499), but on the 997 test users the kept
    # weights did not differ from the pre-trained ones (N@10 .0462 vs .0472, 95 % interval ±.009).
    pars_paths: str = "beam"
    pars_eval_every: int = 50  # PARS steps between validations; the best validated weights are kept
    msra_horizon: int = 3  # h future items (§4.1); 1 = "w/o MSRA"
    msra_decay: float = 0.8  # w
    path_top_n: int = 10  # N of the global path reward's retrieval (paper silent: R@10's cut-off)
    path_max_errors: int = 2  # d: wrong tokens the path reward tolerates (paper silent)
    # LADQ (§3.4.4, genrec_ml.train.ladq) during PARS: per-layer fp32 / bf16 / fp8 matmuls, re-decided
    ladq: bool = False
    ladq_every: int = 50  # PARS steps between decisions
    ladq_budget: float = 1e-3  # summed second-order loss increase the low formats may cost

    def __post_init__(self):
        super().__post_init__()
        if len(self.codebook_sizes) < 2:
            raise GenrecConfigError("codebook_sizes", "REG4Rec needs M >= 1 codebooks and the disambiguation level")
        for name in ("n_items", "n_categories", "corp_every", "pars_users", "pars_group", "pars_eval_every",
                     "msra_horizon", "path_top_n"):
            if getattr(self, name) < 1:
                raise GenrecConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.pars_paths not in PARS_PATHS:
            raise GenrecConfigError("pars_paths", f"{self.pars_paths!r}; choose from {PARS_PATHS}")
        if self.pars_group < 2:
            raise GenrecConfigError("pars_group", "GRPO normalises rewards within a group: needs >= 2 paths")
        if not 0 < self.msra_decay <= 1:
            raise GenrecConfigError("msra_decay", f"must be in (0, 1], got {self.msra_decay}")


# Architecture per profile; the budget is the train profile's. `cpu` is the paper's model: already
# the size TIGER's `cpu` profile measured as fitting one core (1.3M parameters there).
PROFILES: dict[str, Reg4RecConfig] = {
    "smoke": Reg4RecConfig(d_model=64, n_heads=4, d_kv=16, d_ff=256, pars_steps=20, pars_users=32,
                           pars_eval_every=10),
    "cpu": Reg4RecConfig(pars_steps=200),
    "paper": Reg4RecConfig(pars_steps=2000, pars_eval_every=200),
}


class Reg4Rec(Tiger):
    name = "reg4rec"
    config_class = Reg4RecConfig
    profiles = PROFILES  # registry: REG4Rec's own architecture per profile, not TIGER's
    # config fields that pre-training never reads, so a run differing only in them may start from
    # another run's weights (genrec_ml.derived): decoding alone, and PARS (with its MSRA and LADQ)
    inference_fields = ("corp", "corp_threshold", "corp_every", "renormalise")
    post_training_fields = ("pars_steps", "pars_users", "pars_group", "pars_lr", "pars_epsilon", "pars_kl_beta",
                            "pars_scale_rewards", "pars_paths",
                            "pars_eval_every", "msra_horizon", "msra_decay", "path_top_n", "path_max_errors",
                            "ladq", "ladq_every", "ladq_budget")

    def __init__(self, config: Reg4RecConfig):
        super().__init__(config)
        self.category_head = nn.Linear(config.d_model, config.n_categories)
        self.register_buffer("item_categories", torch.zeros(config.n_items, dtype=torch.long))
        self.loss_parts: dict[str, Tensor] = {}
        self.search_stats = SearchStats()  # CORP counts and step orders of every `recommend` since reset

    @property
    def n_sets(self) -> int:
        """M: the free (any-order) positions; the disambiguation code comes after them."""
        return self.vocab.n_levels - 1

    def set_item_categories(self, categories) -> None:
        categories = torch.as_tensor(categories, dtype=torch.long)
        if categories.shape != self.item_categories.shape:
            raise GenrecConfigError("categories", f"{tuple(categories.shape)} labels for a model of "
                                    f"{self.config.n_items} items")
        if len(categories) and (categories.min() < 0 or categories.max() >= self.config.n_categories):
            raise GenrecConfigError("categories", f"labels must lie in [0, {self.config.n_categories})")
        self.item_categories.copy_(categories)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Teacher forcing in a random codebook order: `(step logits (B, L, K_max), loss)`."""
        batch = self._to_device(batch)
        targets = batch["targets"]  # (B, L) codes by position
        memory = self.encode(batch["input_ids"], batch["attention_mask"])  # (B, S, d)
        order = self.training_order(targets.shape[0])  # (B, L)
        step_codes = targets.gather(1, order)  # (B, L) code filled at each step
        logits, category_logits = self.path_outputs(memory, batch["attention_mask"], order, step_codes)
        token = F.cross_entropy(logits.flatten(0, 1).float(), step_codes.flatten())
        categories = self.item_categories[batch["target_items"]]  # (B,)
        category = F.cross_entropy(category_logits.flatten(0, 1).float(),
                                   categories.repeat_interleave(order.shape[1]))
        self.loss_parts = {"token": token.detach(), "category": category.detach()}
        return logits, token + self.config.category_weight * category

    def training_order(self, rows: int) -> Tensor:
        """(rows, L): a random permutation of the M codebooks (fixed 0..M-1 without CRSS), then position M."""
        m = self.n_sets
        fixed = torch.arange(m, device=self.device).expand(rows, -1)
        free = torch.rand(rows, m, device=self.device).argsort(dim=1) if self.config.dynamic_order else fixed
        return torch.cat([free, torch.full((rows, 1), m, device=self.device)], dim=1)

    def path_outputs(self, memory: Tensor, memory_mask: Tensor, order: Tensor, step_codes: Tensor
                     ) -> tuple[Tensor, Tensor]:
        """Teacher forcing along given paths: step j fills position `order[:, j]` with `step_codes[:, j]`.

        `memory` has one row per path. Returns step j's logits over its position's codes
        `(P, n, K_max)` (-inf past K) and its category logits `(P, n, G)`.
        """
        tokens = self.position_tokens(order[:, :-1], step_codes[:, :-1])  # (P, n-1)
        bos = torch.full((order.shape[0], 1), BOS, dtype=torch.long, device=self.device)
        hidden = self.t5.decoder(
            inputs_embeds=self.t5.shared(torch.cat([bos, tokens], dim=1)),  # (P, n, d)
            encoder_hidden_states=memory, encoder_attention_mask=memory_mask, use_cache=False,
        ).last_hidden_state  # (P, n, d)
        index = self.level_index[order]  # (P, n, K_max) token id of each code of the step's position
        logits = self.vocab_logits(hidden).gather(-1, index).masked_fill(~self.level_valid[order], float("-inf"))
        return logits, self.category_head(hidden)

    def position_tokens(self, positions: Tensor, codes: Tensor) -> Tensor:
        """Token ids of code `codes` at position `positions` (same shapes)."""
        offsets = torch.tensor(self.vocab.offsets, device=codes.device)
        return offsets[positions] + codes

    def step_outputs(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Decoder state `(R, d)` -> per-position log-probs `(R, L, K_max)` and category log-probs `(R, G)`.

        Multiplies by the code tokens' rows of the output matrix only (L * K_max of them, not the
        user buckets), in the (L, K_max) layout the search reads: `level_logits(vocab_logits(.))`
        without the full-vocabulary product and the gather (tested equal).
        """
        weight = self.t5.lm_head.weight[self.level_index.flatten()]  # (L*K_max, d)
        logits = F.linear(self._scale_output(hidden), weight).view(len(hidden), *self.level_index.shape)
        logits = logits.float().masked_fill_(~self.level_valid, float("-inf"))  # (R, L, K_max), a fresh tensor
        return logits.log_softmax(dim=-1), self.category_head(hidden).float().log_softmax(dim=-1)

    def build_constraint(self, sids: Tensor) -> TokenSetConstraint:
        """The decoding constraint `SidTask` uses instead of a left-to-right trie."""
        return TokenSetConstraint.from_sids(sids, self.vocab.codebook_sizes)

    def corp(self) -> Corp | None:
        return Corp(self.config.corp_threshold, self.config.corp_every) if self.config.corp else None

    @torch.no_grad()
    def recommend(self, batch: dict[str, Tensor], constraint, beam_width: int = 20, top_k: int = 10
                  ) -> tuple[Tensor, Tensor]:
        """Top-`top_k` items by CRSS beam search (with CORP unless switched off); counts go to `search_stats`."""
        result = self.search(batch, constraint, beam_width, top_k)
        return result.item_ids, result.log_probs

    @torch.no_grad()
    def search(self, batch: dict[str, Tensor], constraint, beam_width: int, top_k: int) -> SetSearchResult:
        was_training = self.training
        self.eval()
        try:
            stepper = self.stepper(batch)
            result = crss_beam_search(stepper, constraint, stepper.batch_size, beam_width, top_k,
                                      dynamic=self.config.dynamic_order, corp=self.corp(), stats=self.search_stats,
                                      renormalise=self.config.renormalise)
            self.search_stats.count_orders(result.orders[:, 0])
            return result
        finally:
            self.train(was_training)

    def stepper(self, batch: dict[str, Tensor]) -> Reg4RecStepper:
        batch = self._to_device(batch)
        return Reg4RecStepper(self, batch["input_ids"], batch["attention_mask"])

    @torch.no_grad()
    def sample_paths(self, batch: dict[str, Tensor], group: int, constraint: TokenSetConstraint | None = None
                     ) -> tuple[Tensor, Tensor]:
        """`group` paths per user from the policy: `(order (B*G, M), codes (B*G, M))`, user-major.

        Step j draws an (open codebook k, code c) pair with probability p_k(c) / #open: the softmax
        over all open codebooks' codes of their per-codebook log-probs, so codebook and code are
        explored together as CRSS chooses them (eq. 5 takes this distribution's mode per codebook).
        The disambiguation code is not sampled: rewards read the M tokens only. Without a
        `constraint` a path need not be a catalog item (the path reward scores any set); with one,
        each step draws only among the (codebook, code) pairs some catalog item consistent with the
        path so far has, as CRSS's beams do, so every path is an item's token set.
        """
        stepper = self.stepper(batch)
        state = stepper.start(stepper.batch_size)
        rows = torch.arange(stepper.batch_size, device=self.device).repeat_interleave(group)
        m, k_max = self.n_sets, max(self.vocab.codebook_sizes)
        open_ = torch.ones(len(rows), m, dtype=torch.bool, device=self.device)
        items = None if constraint is None else constraint.root(len(rows))
        orders, codes, last = [], [], (None, None)
        for step in range(m):
            log_probs, _, state = stepper.step(state, *last)
            if step == 0:
                state, log_probs = stepper.reorder(state, rows), log_probs[rows]
            allowed = open_[..., None]  # (P, M, 1)
            if items is not None:
                allowed = allowed & self._catalog_allows(constraint, items).to(self.device)
            scores = log_probs[:, :m].masked_fill(~allowed, float("-inf")).flatten(1)  # (P, M*K_max)
            pick = torch.multinomial(scores.softmax(dim=1), 1)[:, 0]  # (P,)
            position, code = pick // k_max, pick % k_max
            open_[torch.arange(len(rows), device=self.device), position] = False
            if items is not None:
                items = constraint.advance(items, position, code)
            orders.append(position)
            codes.append(code)
            last = (position, code)
        return torch.stack(orders, dim=1), torch.stack(codes, dim=1)

    @torch.no_grad()
    def rollouts(self, batch: dict[str, Tensor], group: int, constraint: TokenSetConstraint
                 ) -> tuple[Tensor, Tensor]:
        """PARS's G paths per user as `pars_paths` says: `(order (B*G, M), codes (B*G, M))`, user-major."""
        how = self.config.pars_paths
        if how == "beam":
            return self.beam_paths(batch, group, constraint)
        return self.sample_paths(batch, group, constraint if how == "catalog" else None)

    @torch.no_grad()
    def beam_paths(self, batch: dict[str, Tensor], group: int, constraint: TokenSetConstraint
                   ) -> tuple[Tensor, Tensor]:
        """The top `group` items of CRSS beam search (width `group`, CORP as configured) as paths: each
        result's fill order and its item's codes in that order, user-major. A user with fewer reachable
        items (a tiny catalog) repeats its best path; an item found twice is kept once (the search's rule)."""
        stepper = self.stepper(batch)
        result = crss_beam_search(stepper, constraint, stepper.batch_size, group, group,
                                  dynamic=self.config.dynamic_order, corp=self.corp(),
                                  renormalise=self.config.renormalise)
        items, orders = result.item_ids.to(self.device), result.orders.to(self.device)  # (B, G), (B, G, L)
        missing = items < 0
        items = torch.where(missing, items[:, :1], items)
        orders = torch.where(missing[..., None], orders[:, :1], orders)
        order = orders[..., : self.n_sets].flatten(0, 1)  # (B*G, M) the free positions in fill order
        codes = constraint.sids.to(self.device)[items.flatten()].gather(1, order)
        return order, codes

    def _catalog_allows(self, constraint: TokenSetConstraint, items) -> Tensor:
        """(P, M, K_max) bool: codes of each free position some item still consistent with the row has."""
        k_max = max(self.vocab.codebook_sizes)
        masks = [constraint.valid_next(items, position) for position in range(self.n_sets)]  # (P, K_p) each
        return torch.stack([F.pad(mask, (0, k_max - mask.shape[1])) for mask in masks], dim=1)


class Reg4RecStepper(TigerStepper):
    """`genrec_ml.decoding.crss.SetStepper` for a `Reg4Rec`: one cached decoder call per step."""

    def step(self, state: TigerState, positions: Tensor | None, codes: Tensor | None
             ) -> tuple[Tensor, Tensor, TigerState]:
        model = self.model
        if positions is None:
            tokens = torch.full((state.cache.rows,), BOS, dtype=torch.long, device=state.memory.device)
        else:
            tokens = model.position_tokens(positions.to(state.memory.device), codes.to(state.memory.device))
        embeds = model.t5.shared(tokens)[:, None]  # (R, 1, d)
        hidden, cache = model.cached_decoder(embeds, state.memory, state.memory_mask, state.cache)
        log_probs, category = model.step_outputs(hidden[:, -1])
        return log_probs, category, replace(state, cache=cache)
