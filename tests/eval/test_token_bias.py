"""Per-level token recall and popularity-bias amplification against hand-computed values."""

import io

import numpy as np
import pytest
from matplotlib.figure import Figure

from genrec_ml.errors import GenrecDataError
from genrec_ml.eval import per_level_token_recall, plot_token_bias, token_popularity_bias

SIDS = np.array(
    [
        [0, 0, 0],  # item 0
        [0, 0, 1],  # item 1
        [0, 1, 0],  # item 2
        [1, 0, 0],  # item 3
        [1, 1, 1],  # item 4
    ]
)
TOPK = np.array([[1, 0], [2, 0], [4, 3], [-1, -1]])
TARGETS = np.array([0, 0, 4, 3])
TRAIN_COUNTS = np.array([5, 1, 1, 0, 3])


def test_per_level_token_recall_by_hand():
    # user 0: top-1 (0,0,1) vs target (0,0,0) -> matches levels 1, 2
    # user 1: top-1 (0,1,0) vs target (0,0,0) -> level 1 only (level 3 agrees, prefix does not)
    # user 2: top-1 is the target -> all levels;  user 3: empty top-1 -> none
    recall = per_level_token_recall(TOPK, TARGETS, SIDS)
    np.testing.assert_allclose(recall, [3 / 4, 2 / 4, 1 / 4])


def test_popularity_bias_by_hand():
    # Code counts from training targets (K_l = 2, popular = the top ceil(0.5 * 2) = 1 code):
    #   level 0: code 0 = 5+1+1 = 7, code 1 = 0+3 = 3 -> popular {0}
    #   level 1: code 0 = 5+1+0 = 6, code 1 = 1+3 = 4 -> popular {0}
    #   level 2: code 0 = 5+1+0 = 6, code 1 = 1+3 = 4 -> popular {0}
    # Generated items (first 2 slots, padding skipped): 1 0 2 0 4 3; targets: 0 0 4 3.
    #   level 0: generated codes 0 0 0 0 1 1 -> 4/6; target codes 0 0 1 1 -> 2/4
    #   level 1: generated codes 0 0 1 0 1 0 -> 4/6; target codes 0 0 1 0 -> 3/4
    #   level 2: generated codes 1 0 0 0 1 0 -> 4/6; target codes 0 0 1 0 -> 3/4
    result = token_popularity_bias(TOPK, TARGETS, SIDS, TRAIN_COUNTS, k=2, popular_fraction=0.5)
    np.testing.assert_allclose(result.generated_shares[:, 0], [4 / 6, 4 / 6, 4 / 6])
    np.testing.assert_allclose(result.generated_shares[:, 1], [2 / 6, 2 / 6, 2 / 6])
    np.testing.assert_allclose(result.target_shares[:, 0], [2 / 4, 3 / 4, 3 / 4])
    np.testing.assert_allclose(result.amplification, [4 / 3, 8 / 9, 8 / 9])


def test_k_one_uses_only_the_top_item():
    # Generated: 1 2 4 -> level 0 codes 0 0 1 -> 2/3; targets 2/4 -> amplification 4/3.
    result = token_popularity_bias(TOPK, TARGETS, SIDS, TRAIN_COUNTS, k=1, popular_fraction=0.5)
    assert result.amplification[0] == pytest.approx(4 / 3)


def test_amplification_is_nan_without_popular_target_tokens():
    targets = np.array([4, 4, 4, 4])  # item 4 is (1,1,1): all long-tail
    result = token_popularity_bias(TOPK, targets, SIDS, TRAIN_COUNTS, k=2, popular_fraction=0.5)
    assert np.isnan(result.amplification).all()


def test_unknown_item_is_a_data_error():
    with pytest.raises(GenrecDataError, match="item id 9 has no SID"):
        per_level_token_recall(np.array([[9]]), np.array([0]), SIDS)


def test_plot_renders_headless():
    result = token_popularity_bias(TOPK, TARGETS, SIDS, TRAIN_COUNTS, k=2, popular_fraction=0.5)
    fig = plot_token_bias(result)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")


def test_prefix_recall_counts_any_top_k_item_on_the_target_prefix():
    from genrec_ml.eval.token_bias import per_level_prefix_recall

    sids = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    topk = np.array([[1, 2], [3, -1], [2, 0]])  # user 0: item 1 shares code 0 with target 0; user 2 hits
    targets = np.array([0, 2, 0])
    # level 0: users 0 (item 1), 1 (item 3 on code 1 = target 2's), 2 (item 0) -> 3/3; level 1: only user 2
    assert per_level_prefix_recall(topk, targets, sids).tolist() == [1.0, pytest.approx(1 / 3)]
