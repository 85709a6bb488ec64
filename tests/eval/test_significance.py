"""The paired bootstrap and the per-user metrics behind the significance table, on hand examples."""

import numpy as np
import pandas as pd
import pytest

from genrec_ml.eval.significance import paired_bootstrap, per_user_metric, significance_rows


def test_per_user_metrics_from_one_based_ranks():
    rank = np.array([1, 2, 0, 11, 10])  # 0 = target not in the list
    assert per_user_metric(rank, "recall", 10).tolist() == [1, 1, 0, 0, 1]
    assert per_user_metric(rank, "ndcg", 10) == pytest.approx([1.0, 1 / np.log2(3), 0.0, 0.0, 1 / np.log2(11)])
    with pytest.raises(ValueError, match="mrr"):
        per_user_metric(rank, "mrr", 10)


def test_a_constant_difference_has_a_point_interval_and_the_smallest_p_value():
    result = paired_bootstrap([0.5, 0.25, 1.0], [0.25, 0.0, 0.75], n_boot=999)
    assert result.diff == pytest.approx(0.25) and result.mean == pytest.approx(1.75 / 3)
    assert result.ci_low == pytest.approx(0.25) and result.ci_high == pytest.approx(0.25)
    assert result.p_value == pytest.approx(1 / 1000)  # no resample is as far from the observed diff as 0


def test_identical_models_differ_by_nothing_with_p_one():
    values = [1, 0, 0, 1, 0]
    result = paired_bootstrap(values, values, n_boot=200)
    assert (result.diff, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_two_users_hand_example():
    # d = (1, 0): a resample's mean is 0, 1/2 or 1 with probability 1/4, 1/2, 1/4. The 95 % interval is
    # [0, 1]; |d* - 1/2| >= 1/2 exactly when d* is 0 or 1, so p = 1/2.
    result = paired_bootstrap([1.0, 0.0], [0.0, 0.0], n_boot=20_000, seed=3)
    assert result.diff == 0.5 and (result.ci_low, result.ci_high) == (0.0, 1.0)
    assert result.p_value == pytest.approx(0.5, abs=0.015)


def test_paired_beats_unpaired_noise():
    rng = np.random.default_rng(0)
    user_effect = rng.random(2000)  # users differ a lot; the method adds a small constant gain
    result = paired_bootstrap(user_effect + 0.01, user_effect, n_boot=500)
    assert result.p_value < 0.01 and result.ci_low > 0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="equal"):
        paired_bootstrap([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([1], [0], confidence=1.5)


def ranks_frame(rows):
    return pd.DataFrame(rows, columns=["model", "variant", "tokenizer", "profile", "scheme", "seed", "user_index",
                                       "rank"])


def test_significance_rows_average_seeds_per_user_and_pick_the_baseline_on_the_same_codes():
    rows = []
    for user, (s2gr_rank, tiger0, tiger1, other) in enumerate([(1, 1, 0, 0), (3, 0, 0, 1), (0, 2, 2, 0), (1, 0, 1, 1)]):
        rows.append(("s2gr", "default", "coba_rqvae", "cpu", "loo", 0, user, s2gr_rank))
        rows.append(("tiger", "default", "coba_rqvae", "cpu", "loo", 0, user, tiger0))
        rows.append(("tiger", "default", "coba_rqvae", "cpu", "loo", 1, user, tiger1))
        rows.append(("tiger", "default", "rq_vae", "cpu", "loo", 0, user, other))
        rows.append(("sasrec", "default", None, "cpu", "loo", 0, user, 1))  # no baseline rule: no row
    found = significance_rows(ranks_frame(rows), metrics=(("recall", 2),), n_boot=100)
    assert len(found) == 1
    row = found.iloc[0]
    assert (row["model"], row["baseline_model"], row["baseline_tokenizer"]) == ("s2gr", "tiger", "coba_rqvae")
    # recall@2 per user: s2gr (1, 0, 0, 1); tiger seeds averaged ((1+0)/2, 0, (1+1)/2, (0+1)/2)
    assert row["mean"] == pytest.approx(0.5) and row["baseline_mean"] == pytest.approx(0.5)
    assert row["diff"] == pytest.approx(0.0) and row["n_users"] == 4
    assert row["seeds"] == [0] and row["baseline_seeds"] == [0, 1]


def test_no_baseline_under_the_same_profile_gives_no_row():
    rows = [("care", "default", "rq_vae", "cpu", "loo", 0, 0, 1),
            ("tiger", "default", "rq_vae", "paper", "loo", 0, 0, 1)]
    assert significance_rows(ranks_frame(rows)).empty


def test_explicit_cot_is_compared_with_minionerec_and_rearec_with_its_sasrec_backbone():
    rows = []
    for user, (cot, sft, rearec, sasrec) in enumerate([(1, 0, 2, 0), (0, 0, 0, 3), (2, 1, 1, 1)]):
        rows.append(("explicit_cot", "default", "rq_kmeans_4x256", "cpu", "loo", 0, user, cot))
        rows.append(("minionerec", "default", "rq_kmeans_4x256", "cpu", "loo", 0, user, sft))
        rows.append(("rearec", "erl", None, "cpu", "loo", 0, user, rearec))
        rows.append(("sasrec", "default", None, "cpu", "loo", 0, user, sasrec))
    found = significance_rows(ranks_frame(rows), metrics=(("recall", 2),), n_boot=100).set_index("model")
    assert sorted(found.index) == ["explicit_cot", "rearec"]
    assert found.loc["explicit_cot", "baseline_model"] == "minionerec"
    # recall@2: explicit CoT (1, 0, 1) against MiniOneRec (0, 0, 1); ReaRec (1, 0, 1) against SASRec (0, 0, 1)
    assert found.loc["explicit_cot", "diff"] == pytest.approx(1 / 3)
    assert (found.loc["rearec", "baseline_model"], found.loc["rearec", "variant"]) == ("sasrec", "erl")
    assert found.loc["rearec", "diff"] == pytest.approx(1 / 3)
