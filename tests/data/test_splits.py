import pandas as pd
import pytest

from genrec_ml.config import SplitConfig
from genrec_ml.data.splits import build_splits
from genrec_ml.errors import GenrecConfigError


def _interactions(seqs: dict[int, list[int]]) -> pd.DataFrame:
    rows = [(u, p, i) for u, seq in seqs.items() for p, i in enumerate(seq)]
    return pd.DataFrame(rows, columns=["user_index", "position", "item_index"])


def test_leave_one_out_targets_and_histories():
    out = build_splits(_interactions({0: [10, 11, 12, 13, 14]}), SplitConfig(max_history=2))
    loo = out[out.scheme == "loo"].sort_values("target_position")
    assert loo["split"].tolist() == ["train", "train", "valid", "test"]
    assert loo["target_item_index"].tolist() == [11, 12, 13, 14]
    # history = at most 2 items right before the target
    assert loo["history"].tolist() == [[10], [10, 11], [11, 12], [12, 13]]


def test_short_users_only_train():
    out = build_splits(_interactions({0: [1, 2]}), SplitConfig())
    assert set(out["split"]) == {"train"}


def test_ratio_split_is_per_user_chronological():
    out = build_splits(_interactions({0: list(range(20))}), SplitConfig())
    ratio = out[out.scheme == "ratio"]
    # 20 items: 16 train (targets 1..15), 2 valid (16, 17), 2 test (18, 19)
    assert ratio.groupby("split").size().to_dict() == {"test": 2, "train": 15, "valid": 2}
    assert ratio.loc[ratio.split == "test", "target_position"].tolist() == [18, 19]
    assert ratio.loc[ratio.split == "valid", "target_position"].tolist() == [16, 17]


def test_ratio_split_keeps_a_train_item_for_short_sequences():
    out = build_splits(_interactions({0: [5, 6, 7]}), SplitConfig(ratio=(0.2, 0.4, 0.4)))
    ratio = out[out.scheme == "ratio"].sort_values("target_position")
    assert ratio["split"].tolist() == ["valid", "test"]  # position 0 is the one train item


def test_bad_ratio():
    with pytest.raises(GenrecConfigError, match="ratio"):
        SplitConfig(ratio=(0.5, 0.5, 0.5))
