r"""REG4Rec's four path rewards (PARS, §3.4.2 eq. 10-14) and their multi-step extension (MSRA, §3.4.3).

A *path* is one generated item: M tokens, one from each of M parallel MPQ codebooks, chosen in any
order. Tokens are global ids (codebook r's code c is r * K + c), so a path and an item's token set
compare as sets of ints, whatever order the path was decoded in. Everything is batched over P paths.

    step        (eq. 10)  gamma_step = (1/M) sum_i 1[c_i in C_target]
    category    (eq. 11)  gamma_cate = (1/M) sum_i 1[argmax p_i = g_target]
    consistency (eq. 13)  gamma_js   = 1 - (1/(M-1)) sum_i JS(p_i || p_{i+1})
                (eq. 12)  JS(p || q) = KL(p || m)/2 + KL(q || m)/2,  m = (p + q)/2
    path        (eq. 14)  gamma_path = 1[target in Top-N(z)],  z = sum of the codewords of the M-d
                          correct tokens, d = number of path tokens outside C_target

MSRA (eq. 15-16) scores a path against each of the next h targets i_{t+1..t+h} of the user and
averages with weights w^{j-1}:  gamma^msra = sum_j w^{j-1} gamma^{(j)} / sum_j w^{j-1}.  This is
applied to step, category and path; consistency does not depend on the target. The overall reward
is the plain sum of the four (§3.4.2: "the overall reward ... is the sum of the above components").

Where the paper is silent, and what we chose:
- JS uses the natural log, so JS lies in [0, ln 2] and gamma_js in [1 - ln 2, 1] (about [0.31, 1]).
  A base-2 log would span [0, 1]; the paper does not say, and natural log is what KL usually means.
- gamma_js of a one-token path (M = 1, no consecutive pair) is 1: nothing can be inconsistent.
- Eq. 11 compares the step's predicted category (argmax of its distribution) with the target item's
  single category label.
- Eq. 14 leaves N, the allowed number of wrong tokens d and the similarity open. N = 10 (the
  reward then reads as "R@10 still holds"), at most max_errors = 2 wrong tokens (a path with more
  earns 0), and items are scored by inner product <z, v_n> with v_n the sum of item n's codewords,
  i.e. retrieval by dot product in the codeword space. Ties are resolved in the target's favour:
  it is in the top N when fewer than N items score strictly higher.
- With MSRA the "correct tokens" of eq. 14 are those in the token set of window item j, so z and d
  are recomputed per window item. Eq. 16's prose says the reward is positive if *any* window item
  is retrieved; its formula is the weighted average of the per-item indicators, which we follow.
- A window shorter than h (the user's training examples run out) is normalised by the weights of
  the entries it has; the next targets come only from training rows, so no validation or test
  target ever enters a reward (see `msra_windows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from genrec_ml.errors import GenrecConfigError, GenrecDataError

MISSING = -1  # window entry past the end of a user's training examples
SCORE_CHUNK_ELEMENTS = 1 << 22  # path x item scores held at once by path_reward (16 MiB in float32)


@dataclass(frozen=True)
class Rewards:
    """Reward settings of REG4Rec's post-training; defaults from the paper where it gives them."""

    h: int = 3  # MSRA window: the next h training targets of the user (REG4Rec §4.1)
    w: float = 0.8  # MSRA time decay w^{j-1}, in (0, 1]; 1 is a plain average (REG4Rec §4.1)
    top_n: int = 10  # eq. 14's N; paper silent: 10, as R@10
    max_errors: int = 2  # eq. 14's d: wrong tokens a path may have and still earn the path reward; paper silent

    def __post_init__(self):
        if self.h < 1:
            raise GenrecConfigError("h", f"must be >= 1, got {self.h}")
        _check_decay(self.w)
        if self.top_n < 1:
            raise GenrecConfigError("top_n", f"must be >= 1, got {self.top_n}")
        if self.max_errors < 0:
            raise GenrecConfigError("max_errors", f"must be >= 0, got {self.max_errors}")

    def components(
        self,
        path_tokens,
        step_category_probs,
        window_tokens,
        window_items,
        window_categories,
        token_vectors,
        item_vectors,
    ) -> dict[str, Tensor]:
        """`reward_components` with these settings; the window must be `h` wide."""
        if window_items.shape[1] != self.h:
            raise ValueError(f"window_items has {window_items.shape[1]} columns, Rewards.h is {self.h}")
        return reward_components(
            path_tokens,
            step_category_probs,
            window_tokens,
            window_items,
            window_categories,
            token_vectors,
            item_vectors,
            w=self.w,
            top_n=self.top_n,
            max_errors=self.max_errors,
        )


def _check_decay(w: float) -> None:
    if not 0 < w <= 1:
        raise GenrecConfigError("w", f"MSRA time decay must be in (0, 1], got {w}")


def _token_in_target(path_tokens: Tensor, target_tokens: Tensor) -> Tensor:
    """(P, M) bool: is each path token one of the target's M tokens (sets of global ids)."""
    if path_tokens.dim() != 2 or target_tokens.shape != path_tokens.shape:
        raise ValueError(
            f"path_tokens and target_tokens must both be (P, M), got {tuple(path_tokens.shape)} "
            f"and {tuple(target_tokens.shape)}"
        )
    return (path_tokens[:, :, None] == target_tokens[:, None, :]).any(dim=2)  # (P, M, M) -> (P, M)


def step_hit(path_tokens: Tensor, target_tokens: Tensor) -> Tensor:
    """Eq. 10: share of the path's M tokens that are in the target's token set. (P, M), (P, M) -> (P,)."""
    return _token_in_target(path_tokens, target_tokens).float().mean(dim=1)


def category_hit(step_categories: Tensor, target_category: Tensor) -> Tensor:
    """Eq. 11: share of steps whose predicted category is the target's. (P, M), (P,) -> (P,)."""
    if step_categories.dim() != 2 or target_category.shape != step_categories.shape[:1]:
        raise ValueError(
            f"step_categories must be (P, M) and target_category (P,), got {tuple(step_categories.shape)} "
            f"and {tuple(target_category.shape)}"
        )
    return (step_categories == target_category[:, None]).float().mean(dim=1)


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """Eq. 12 in nats, in [0, ln 2], over the last axis: (..., C), (..., C) -> (...). 0 log 0 = 0."""
    m = (p + q) / 2
    kl_pm = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(dim=-1)
    kl_qm = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(dim=-1)
    return ((kl_pm + kl_qm) / 2).clamp(min=0)  # rounding can dip a hair below 0 for p == q


def step_consistency(category_probs: Tensor) -> Tensor:
    """Eq. 13: 1 - mean JS of consecutive steps' category distributions. (P, M, C) -> (P,)."""
    if category_probs.dim() != 3:
        raise ValueError(f"category_probs must be (P, M, C), got {tuple(category_probs.shape)}")
    if category_probs.shape[1] < 2:
        return category_probs.new_ones(category_probs.shape[0])
    js = js_divergence(category_probs[:, :-1], category_probs[:, 1:])  # (P, M-1)
    return 1 - js.mean(dim=1)


def path_reward(
    path_tokens: Tensor,
    target_tokens: Tensor,
    target_items: Tensor,
    token_vectors: Tensor,
    item_vectors: Tensor,
    top_n: int = 10,
    max_errors: int = 2,
) -> Tensor:
    """Eq. 14: 1 if the codewords of the path's correct tokens still retrieve the target in the top N.

    path_tokens, target_tokens (P, M) global ids; target_items (P,) rows of item_vectors;
    token_vectors (V, d) the codeword of each global token; item_vectors (N, d) each item's summed
    codewords. Paths with more than max_errors wrong tokens get 0 without being scored; the others
    are scored against the catalog SCORE_CHUNK_ELEMENTS at a time, never all (P, N) at once.
    """
    correct = _token_in_target(path_tokens, target_tokens)  # (P, M)
    n_paths, n_steps = correct.shape
    if not 0 <= max_errors < n_steps:
        raise ValueError(
            f"max_errors must be in [0, M - 1] = [0, {n_steps - 1}]: with every token wrong z = 0 and "
            f"all items tie, got {max_errors}"
        )
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    if target_items.shape != (n_paths,):
        raise ValueError(f"target_items must be (P,) = ({n_paths},), got {tuple(target_items.shape)}")
    n_items = item_vectors.shape[0]
    if n_paths and not (0 <= int(target_items.min()) and int(target_items.max()) < n_items):
        raise ValueError(f"target_items must index item_vectors' {n_items} rows")

    reward = torch.zeros(n_paths, dtype=item_vectors.dtype, device=item_vectors.device)
    eligible = torch.nonzero((n_steps - correct.sum(dim=1)) <= max_errors).squeeze(1)  # (E,)
    chunk = max(1, SCORE_CHUNK_ELEMENTS // max(n_items, 1))
    for start in range(0, eligible.numel(), chunk):
        rows = eligible[start : start + chunk]  # (E_c,)
        codewords = token_vectors[path_tokens[rows]]  # (E_c, M, d)
        z = (codewords * correct[rows, :, None]).sum(dim=1)  # (E_c, d)
        scores = z @ item_vectors.T  # (E_c, N)
        # the target's score from the same matmul, so it compares to the others without rounding noise
        target_score = scores.gather(1, target_items[rows, None])  # (E_c, 1)
        n_above = (scores > target_score).sum(dim=1)  # (E_c,)
        reward[rows] = (n_above < top_n).to(reward.dtype)
    return reward


def msra_weights(h: int, w: float) -> Tensor:
    """Eq. 15's decay weights w^{j-1} for j = 1..h. -> (h,)."""
    _check_decay(w)
    return w ** torch.arange(h, dtype=torch.float64)


def msra_reward(per_item_rewards: Tensor, window_valid: Tensor, w: float) -> Tensor:
    """Eq. 15/16: decay-weighted mean over the valid window entries. (P, h), (P, h) bool -> (P,).

    Both sums run over valid entries only, so a window cut short by the end of a user's history is
    normalised by the weights it has. A row with no valid entry gets 0. Invalid entries may hold
    anything, NaN included.
    """
    if per_item_rewards.dim() != 2 or window_valid.shape != per_item_rewards.shape:
        raise ValueError(
            f"per_item_rewards and window_valid must both be (P, h), got {tuple(per_item_rewards.shape)} "
            f"and {tuple(window_valid.shape)}"
        )
    weights = msra_weights(per_item_rewards.shape[1], w).to(per_item_rewards)  # (h,)
    zero = per_item_rewards.new_zeros(())
    weighted = torch.where(window_valid, weights * per_item_rewards, zero).sum(dim=1)  # (P,)
    total_weight = torch.where(window_valid, weights, zero).sum(dim=1)  # (P,)
    return torch.where(total_weight > 0, weighted / total_weight.clamp(min=1e-12), zero)


def msra_windows(train: pd.DataFrame, h: int) -> Tensor:
    """The next h training targets of each training row's user, itself first. -> LongTensor (len(train), h).

    Row i's window holds the target_item_index of the same user's rows at target_position >= row i's,
    in position order (entry 0 is row i's own target), MISSING (-1) once that user's rows run out.
    Only rows of `train` are looked at, so a validation or test target can never appear: that is
    the no-leakage guarantee. Rows keep the input order.
    """
    for column in ("user_index", "target_position", "target_item_index"):
        if column not in train.columns:
            raise GenrecDataError(f"msra_windows needs column '{column}'; got {list(train.columns)}", field=column)
    if h < 1:
        raise GenrecConfigError("h", f"must be >= 1, got {h}")
    users = train["user_index"].to_numpy()
    positions = train["target_position"].to_numpy()
    targets = train["target_item_index"].to_numpy().astype(np.int64)

    order = np.lexsort((positions, users))  # by user, then position
    sorted_users, sorted_positions, sorted_targets = users[order], positions[order], targets[order]
    repeated = (sorted_users[1:] == sorted_users[:-1]) & (sorted_positions[1:] == sorted_positions[:-1])
    if repeated.any():
        k = int(np.argmax(repeated))
        raise GenrecDataError(
            f"user {sorted_users[k]} has two training rows at target_position {sorted_positions[k]}; "
            "each (user_index, target_position) must be unique",
            field="target_position",
        )

    n = len(train)
    windows_sorted = np.full((n, h), MISSING, dtype=np.int64)  # (n, h), rows in sorted order
    ahead = np.arange(n)
    for j in range(h):  # h is small (3); each offset is one vectorised pass
        idx = ahead + j
        in_range = idx < n
        same_user = np.zeros(n, dtype=bool)
        same_user[in_range] = sorted_users[idx[in_range]] == sorted_users[in_range]
        windows_sorted[same_user, j] = sorted_targets[idx[same_user]]

    windows = np.empty_like(windows_sorted)
    windows[order] = windows_sorted  # back to the input row order
    return torch.from_numpy(windows)


def reward_components(
    path_tokens: Tensor,
    step_category_probs: Tensor,
    window_tokens: Tensor,
    window_items: Tensor,
    window_categories: Tensor,
    token_vectors: Tensor,
    item_vectors: Tensor,
    w: float = 0.8,
    top_n: int = 10,
    max_errors: int = 2,
) -> dict[str, Tensor]:
    """The four REG4Rec rewards of each path, MSRA-averaged over its window, and their sum.

    path_tokens (P, M) global ids; step_category_probs (P, M, C) each step's category distribution;
    window_tokens (P, h, M) token sets of the window items; window_items (P, h) item ids, MISSING
    past the end; window_categories (P, h) their categories. Rows of invalid entries may hold
    anything. With h = 1 step, category and path are plain eq. 10, 11 and 14.
    Returns {"step", "category", "consistency", "path", "total"}, each (P,).
    """
    n_paths, n_steps = path_tokens.shape
    h = window_items.shape[1]
    if window_tokens.shape != (n_paths, h, n_steps) or window_categories.shape != (n_paths, h):
        raise ValueError(
            f"window_tokens must be (P, h, M) = {(n_paths, h, n_steps)} and window_categories (P, h), got "
            f"{tuple(window_tokens.shape)} and {tuple(window_categories.shape)}"
        )
    if step_category_probs.shape[:2] != (n_paths, n_steps):
        raise ValueError(f"step_category_probs must be (P, M, C), got {tuple(step_category_probs.shape)}")
    valid = window_items != MISSING  # (P, h)

    # every (path, window item) pair as one flat batch of P*h paths
    flat_paths = path_tokens[:, None, :].expand(n_paths, h, n_steps).reshape(n_paths * h, n_steps)  # (P*h, M)
    flat_targets = window_tokens.reshape(n_paths * h, n_steps)  # (P*h, M)
    step = step_hit(flat_paths, flat_targets).reshape(n_paths, h)  # (P, h)

    step_categories = step_category_probs.argmax(dim=2)  # (P, M)
    flat_categories = step_categories[:, None, :].expand(n_paths, h, n_steps).reshape(n_paths * h, n_steps)
    category = category_hit(flat_categories, window_categories.reshape(n_paths * h)).reshape(n_paths, h)

    flat_valid = valid.reshape(n_paths * h)  # (P*h,)
    path = torch.zeros(n_paths * h, dtype=item_vectors.dtype, device=item_vectors.device)
    path[flat_valid] = path_reward(
        flat_paths[flat_valid],
        flat_targets[flat_valid],
        window_items.reshape(n_paths * h)[flat_valid],
        token_vectors,
        item_vectors,
        top_n=top_n,
        max_errors=max_errors,
    )
    path = path.reshape(n_paths, h)

    out = {
        "step": msra_reward(step, valid, w),
        "category": msra_reward(category, valid, w),
        "consistency": step_consistency(step_category_probs),
        "path": msra_reward(path, valid, w),
    }
    out["total"] = out["step"] + out["category"] + out["consistency"] + out["path"]
    return out
