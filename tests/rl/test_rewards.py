"""REG4Rec rewards (eq. 10-16) against hand-computed values and plain-loop references."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import genrec_ml.rl.rewards as rewards_module
from genrec_ml.errors import GenrecDataError
from genrec_ml.rl import (
    Rewards,
    category_hit,
    js_divergence,
    msra_reward,
    msra_weights,
    msra_windows,
    path_reward,
    reward_components,
    step_consistency,
    step_hit,
)

LN2 = math.log(2)

# A tiny catalog: M = 3 codebooks of K = 2 codes, global token = r * 2 + c, codewords in 2-d.
TOKEN_VECTORS = torch.tensor(
    [
        [1.0, 0.0],  # t0 = codebook 0, code 0
        [0.0, 1.0],  # t1
        [1.0, 0.0],  # t2 = codebook 1, code 0
        [0.0, 2.0],  # t3
        [1.0, 1.0],  # t4 = codebook 2, code 0
        [-1.0, 0.0],  # t5
    ]
)
ITEM_TOKENS = torch.tensor([[0, 2, 4], [0, 3, 5], [1, 2, 4], [1, 3, 5]])
# summed codewords: item0 [3, 1], item1 [0, 2], item2 [2, 2], item3 [-1, 3]
ITEM_VECTORS = TOKEN_VECTORS[ITEM_TOKENS].sum(dim=1)


def _step_hit_loop(path, target):
    return [sum(t in set(tg) for t in p) / len(p) for p, tg in zip(path.tolist(), target.tolist(), strict=True)]


def test_step_hit_by_hand():
    path = torch.tensor([[0, 5, 10], [5, 0, 9], [1, 6, 11]])  # K = 4: tokens 0-3, 4-7, 8-11
    target = torch.tensor([[0, 5, 11], [0, 5, 9], [0, 5, 10]])
    # 2 of 3 in the set; all 3 (order does not matter); none
    torch.testing.assert_close(step_hit(path, target), torch.tensor([2 / 3, 1.0, 0.0]))


def test_step_hit_matches_loop():
    gen = torch.Generator().manual_seed(0)
    n_codebooks, k = 4, 3
    offsets = torch.arange(n_codebooks) * k
    path = torch.randint(0, k, (50, n_codebooks), generator=gen) + offsets
    target = (torch.randint(0, k, (50, n_codebooks), generator=gen) + offsets)[:, torch.randperm(n_codebooks)]
    torch.testing.assert_close(step_hit(path, target), torch.tensor(_step_hit_loop(path, target)))


def test_category_hit_by_hand():
    step_categories = torch.tensor([[2, 2, 1], [0, 0, 0], [4, 4, 4]])
    target_category = torch.tensor([2, 1, 4])
    torch.testing.assert_close(category_hit(step_categories, target_category), torch.tensor([2 / 3, 0.0, 1.0]))


def test_js_divergence_by_hand():
    # p = [1, 0], q = [1/2, 1/2], m = [3/4, 1/4]
    # KL(p||m) = ln(4/3); KL(q||m) = 1/2 ln(2/3) + 1/2 ln 2
    expected = (math.log(4 / 3) + 0.5 * math.log(2 / 3) + 0.5 * LN2) / 2
    p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])
    assert js_divergence(p, q).item() == pytest.approx(expected)


def test_js_divergence_properties():
    gen = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(6, 5, generator=gen), dim=-1)
    q = torch.softmax(torch.randn(6, 5, generator=gen), dim=-1)
    torch.testing.assert_close(js_divergence(p, q), js_divergence(q, p))
    assert ((js_divergence(p, q) >= 0) & (js_divergence(p, q) <= LN2)).all()
    torch.testing.assert_close(js_divergence(p, p), torch.zeros(6), atol=1e-7, rtol=0)
    one_hot = torch.eye(3)
    assert js_divergence(one_hot[0], one_hot[2]).item() == pytest.approx(LN2)


def test_step_consistency_by_hand():
    one_hot = torch.eye(3)
    probs = torch.stack([one_hot[[0, 0, 1]], one_hot[[2, 2, 2]]])  # (P=2, M=3, C=3)
    # pairs: (0, 0) -> 0 and (0, 1) -> ln 2, mean ln2 / 2; constant path -> 0
    torch.testing.assert_close(step_consistency(probs), torch.tensor([1 - LN2 / 2, 1.0]))
    assert step_consistency(probs[:, :1]).tolist() == [1.0, 1.0]  # one step: nothing to disagree with


PATHS = torch.tensor([[4, 0, 2], [1, 3, 5], [0, 3, 4], [1, 3, 5]])
TARGET_ITEMS = torch.tensor([0, 1, 2, 0])
# p0: item0's own tokens in another order, d = 0, z = [3, 1]: scores 10, 2, 8, 0 -> item0 first
# p1: t3, t5 right, d = 1, z = [-1, 2]: scores -1, 4, 2, 7 -> item3 above item1
# p2: only t4 right, d = 2, z = [1, 1]: scores 4, 2, 4, 2 -> item0 ties item2, none strictly above
# p3: nothing right, d = 3 > max_errors -> 0


@pytest.mark.parametrize(
    ("top_n", "max_errors", "expected"),
    [(1, 2, [1, 0, 1, 0]), (2, 2, [1, 1, 1, 0]), (2, 1, [1, 1, 0, 0]), (1, 0, [1, 0, 0, 0])],
)
def test_path_reward_by_hand(top_n, max_errors, expected):
    got = path_reward(PATHS, ITEM_TOKENS[TARGET_ITEMS], TARGET_ITEMS, TOKEN_VECTORS, ITEM_VECTORS, top_n, max_errors)
    assert got.tolist() == expected


def _path_reward_loop(path, target_tokens, target_items, token_vectors, item_vectors, top_n, max_errors):
    out = []
    for p, tg, item in zip(path.tolist(), target_tokens.tolist(), target_items.tolist(), strict=True):
        right = [t for t in p if t in set(tg)]
        if len(p) - len(right) > max_errors:
            out.append(0.0)
            continue
        z = token_vectors[right].sum(dim=0)
        scores = (item_vectors @ z).tolist()
        out.append(float(sum(s > scores[item] for s in scores) < top_n))
    return out


@pytest.mark.parametrize("chunk_elements", [rewards_module.SCORE_CHUNK_ELEMENTS, 7])
def test_path_reward_matches_loop(monkeypatch, chunk_elements):
    monkeypatch.setattr(rewards_module, "SCORE_CHUNK_ELEMENTS", chunk_elements)  # 7 // N = 1 path per chunk
    gen = torch.Generator().manual_seed(0)
    n_codebooks, k, n_items = 4, 3, 30
    offsets = torch.arange(n_codebooks) * k
    token_vectors = torch.randn(n_codebooks * k, 5, generator=gen)
    item_tokens = torch.randint(0, k, (n_items, n_codebooks), generator=gen) + offsets
    item_vectors = token_vectors[item_tokens].sum(dim=1)
    targets = torch.randint(0, n_items, (40,), generator=gen)
    # paths near their targets: each token swapped for a random code of its codebook with prob 0.4
    noise = torch.randint(0, k, (40, n_codebooks), generator=gen) + offsets
    paths = torch.where(torch.rand(40, n_codebooks, generator=gen) < 0.4, noise, item_tokens[targets])
    args = (paths, item_tokens[targets], targets, token_vectors, item_vectors, 5, 2)
    expected = _path_reward_loop(*args)
    assert 0 < sum(expected) < len(expected)
    assert path_reward(*args).tolist() == expected


def test_path_reward_refuses_max_errors_of_m():
    with pytest.raises(ValueError, match="max_errors"):
        path_reward(PATHS, ITEM_TOKENS[TARGET_ITEMS], TARGET_ITEMS, TOKEN_VECTORS, ITEM_VECTORS, 1, 3)


def test_msra_weights():
    torch.testing.assert_close(msra_weights(3, 0.8), torch.tensor([1.0, 0.8, 0.64], dtype=torch.float64))


def test_msra_reward_by_hand():
    per_item = torch.tensor([[1.0, 0.0, 1.0], [0.5, 1.0, math.nan], [0.3, 0.3, 0.3]])
    valid = torch.tensor([[True, True, True], [True, True, False], [False, False, False]])
    # (1 + 0.64) / 2.44; a window cut to 2 entries: (0.5 + 0.8) / 1.8; no valid entry -> 0
    expected = torch.tensor([1.64 / 2.44, 1.3 / 1.8, 0.0])
    torch.testing.assert_close(msra_reward(per_item, valid, 0.8), expected)
    # h = 1 is the plain reward
    torch.testing.assert_close(msra_reward(per_item[:, :1], torch.ones(3, 1, dtype=torch.bool), 0.8), per_item[:, 0])


def _two_user_frame():
    rows = [(7, p, 10 + p - 1) for p in (1, 2, 3, 4)] + [(3, p, 20 + p - 1) for p in (1, 2)]
    frame = pd.DataFrame(rows, columns=["user_index", "target_position", "target_item_index"])
    return frame.sample(frac=1.0, random_state=3).reset_index(drop=True)  # shuffled rows


def test_msra_windows_two_users():
    train = _two_user_frame()
    # user 7's validation/test targets 14, 15 and user 3's 22 live at later positions, not in train
    windows = msra_windows(train, h=3)
    expected = {
        (7, 1): [10, 11, 12],
        (7, 2): [11, 12, 13],
        (7, 3): [12, 13, -1],
        (7, 4): [13, -1, -1],
        (3, 1): [20, 21, -1],
        (3, 2): [21, -1, -1],
    }
    assert windows.dtype == torch.int64 and windows.shape == (6, 3)
    for i, row in train.iterrows():
        assert windows[i].tolist() == expected[(row.user_index, row.target_position)]
    assert not set(windows.flatten().tolist()) & {14, 15, 22}


def _windows_loop(train, h):
    out = []
    for row in train.itertuples():
        later = train[(train.user_index == row.user_index) & (train.target_position >= row.target_position)]
        items = later.sort_values("target_position").target_item_index.tolist()[:h]
        out.append(items + [-1] * (h - len(items)))
    return out


def test_msra_windows_matches_loop():
    rng = np.random.default_rng(0)
    frames = []
    for user in range(5):
        positions = np.sort(rng.choice(np.arange(1, 30), size=rng.integers(1, 8), replace=False))  # gaps allowed
        frames.append(pd.DataFrame({"user_index": user, "target_position": positions}))
    train = pd.concat(frames).sample(frac=1.0, random_state=0).reset_index(drop=True)
    train["target_item_index"] = rng.integers(0, 100, size=len(train))
    assert msra_windows(train, h=4).tolist() == _windows_loop(train, 4)


def test_msra_windows_refuses_duplicate_positions():
    train = pd.DataFrame({"user_index": [1, 1], "target_position": [2, 2], "target_item_index": [5, 6]})
    with pytest.raises(GenrecDataError, match="target_position"):
        msra_windows(train, h=2)


def test_reward_components_by_hand():
    paths = torch.tensor([[0, 2, 4], [1, 3, 5]])
    window_items = torch.tensor([[0, 2], [1, -1]])
    window_tokens = torch.stack([ITEM_TOKENS[[0, 2]], torch.stack([ITEM_TOKENS[1], torch.full((3,), -1)])])
    window_categories = torch.tensor([[5, 6], [5, -1]])
    probs = torch.eye(7)[[5, 5, 6]].expand(2, 3, 7)  # argmax categories 5, 5, 6 on both paths
    got = reward_components(
        paths,
        probs,
        window_tokens,
        window_items,
        window_categories,
        TOKEN_VECTORS,
        ITEM_VECTORS,
        w=0.8,
        top_n=1,
        max_errors=2,
    )
    # path 0 vs item0 / item2: step 1 and 2/3; category (5) 2/3 and (6) 1/3;
    #   path: item0 retrieved first (z = [3, 1]); item2 not (z = t2 + t4 = [2, 1], item0 scores 7 > 6)
    # path 1 vs item1 only: step 2/3, category 2/3, path 0 (item3 above item1, see PATHS)
    expected = {
        "step": [(1 + 0.8 * 2 / 3) / 1.8, 2 / 3],
        "category": [(2 / 3 + 0.8 / 3) / 1.8, 2 / 3],
        "consistency": [1 - LN2 / 2, 1 - LN2 / 2],
        "path": [1 / 1.8, 0.0],
    }
    expected["total"] = [sum(expected[k][p] for k in ("step", "category", "consistency", "path")) for p in range(2)]
    assert set(got) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], torch.tensor(value), msg=key)


def test_reward_components_window_of_one_is_plain_rewards():
    gen = torch.Generator().manual_seed(0)
    n_paths, n_codebooks, k, n_items, n_categories = 20, 3, 2, 8, 4
    offsets = torch.arange(n_codebooks) * k
    token_vectors = torch.randn(n_codebooks * k, 3, generator=gen)
    item_tokens = torch.randint(0, k, (n_items, n_codebooks), generator=gen) + offsets
    item_vectors = token_vectors[item_tokens].sum(dim=1)
    item_categories = torch.randint(0, n_categories, (n_items,), generator=gen)
    paths = torch.randint(0, k, (n_paths, n_codebooks), generator=gen) + offsets
    probs = torch.softmax(torch.randn(n_paths, n_codebooks, n_categories, generator=gen), dim=-1)
    targets = torch.randint(0, n_items, (n_paths,), generator=gen)
    got = reward_components(
        paths,
        probs,
        item_tokens[targets][:, None],
        targets[:, None],
        item_categories[targets][:, None],
        token_vectors,
        item_vectors,
        top_n=3,
    )
    torch.testing.assert_close(got["step"], step_hit(paths, item_tokens[targets]))
    torch.testing.assert_close(got["category"], category_hit(probs.argmax(-1), item_categories[targets]))
    torch.testing.assert_close(got["consistency"], step_consistency(probs))
    plain_path = path_reward(paths, item_tokens[targets], targets, token_vectors, item_vectors, top_n=3)
    torch.testing.assert_close(got["path"], plain_path)


def test_rewards_config():
    config = Rewards()
    assert (config.h, config.w, config.top_n, config.max_errors) == (3, 0.8, 10, 2)
    with pytest.raises(ValueError, match="Rewards.h"):
        config.components(
            PATHS,
            torch.ones(4, 3, 2),
            ITEM_TOKENS[:, None].expand(4, 1, 3),
            torch.zeros(4, 1, dtype=torch.long),
            torch.zeros(4, 1, dtype=torch.long),
            TOKEN_VECTORS,
            ITEM_VECTORS,
        )
