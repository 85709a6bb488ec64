"""LASAR's RL phase: candidate log-probs = the beam search's scores, the step's parts by switch, a run that
resumes step for step, and the RL variant derived from the SFT run's weights with CoT anchors."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from genrec_ml.decoding import Trie, constrained_beam_search
from genrec_ml.derived import derive_experiment
from genrec_ml.experiments import Catalog, Experiment, read_run_info, train_experiment
from genrec_ml.models.lasar import Lasar, LasarConfig
from genrec_ml.rl.lasar import candidate_log_probs, lasar_rl_context, lasar_rl_step, sample_steps
from genrec_ml.text.anchors import anchors_by_example, cot_anchor_rows
from genrec_ml.train.config import train_config
from tests.models.test_minionerec import TINY
from tests.test_experiments import N_ITEMS, SIZES, TINY_TRAIN, splits_table


class Killed(Exception):
    pass


def tiny(**settings) -> Lasar:
    torch.manual_seed(0)
    return Lasar(LasarConfig(codebook_sizes=SIZES, **TINY, max_steps=3, rl_users=4, rl_group=4, **settings)).eval()


def cot_for(model, splits: pd.DataFrame) -> pd.DataFrame:
    train = splits[splits["split"] == "train"]
    segments = [["Preference: recent items lead."] + (["Intent: the next one."] if len(h) > 2 else [])
                for h in train["history"]]
    return anchors_by_example(cot_anchor_rows(model, pd.DataFrame({
        "user_index": train["user_index"], "target_position": train["target_position"], "segments": segments})))


def test_candidate_log_probs_are_the_beam_searchs_scores_under_the_same_n():
    splits, sids = splits_table(n_users=8)
    model = tiny()
    context = lasar_rl_context(model, splits[splits["split"] == "train"], sids, None)
    batch = context.data.batch(np.arange(3))
    steps = torch.tensor([1, 3, 2])
    items, scores = constrained_beam_search(model.stepper(batch, steps), Trie.from_sids(torch.as_tensor(sids), SIZES),
                                            3, 4, 4)
    token, latent = candidate_log_probs(model, batch, steps, context.data.sids[items])
    assert torch.allclose(token.sum(-1), scores, atol=1e-5)
    assert latent.shape == (3, 3, TINY["d_model"])


def test_sampled_steps_follow_the_head_and_the_generator():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(4000, -1)
    drawn = sample_steps(logits, torch.Generator().manual_seed(0))
    assert torch.equal(drawn, sample_steps(logits, torch.Generator().manual_seed(0)))
    shares = torch.bincount(drawn, minlength=4)[1:].float() / len(drawn)
    assert torch.allclose(shares, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)


@pytest.mark.parametrize("settings, parts", [({}, {"grpo", "terminal_kl", "reinforce"}),
                                              ({"reinforce_weight": 0.0}, {"grpo", "terminal_kl"}),
                                              ({"reinforce_weight": 0.0, "terminal_kl_weight": 0.0}, {"grpo"})])
def test_an_rl_step_has_the_parts_switched_on_and_only_reinforce_moves_the_head(settings, parts):
    splits, sids = splits_table(n_users=8)
    model = tiny(**{"terminal_kl_weight": 1.0, "rl_lr": 1e-2, **settings})
    from genrec_ml.data.cot_sequences import attach_cot

    train = attach_cot(splits[splits["split"] == "train"], cot_for(model, splits))
    context = lasar_rl_context(model, train, sids, None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=model.config.rl_lr)
    head = copy.deepcopy(model.policy_head.state_dict())
    metrics = lasar_rl_step(model, copy.deepcopy(model), context, optimizer, train_config("smoke"), 0)
    assert parts <= set(metrics) and not ({"grpo", "terminal_kl", "reinforce"} - parts) & set(metrics)
    assert all(np.isfinite(v) for v in metrics.values()) and 1 <= metrics["mean_n"] <= 3
    moved = any(not torch.equal(head[k], v) for k, v in model.policy_head.state_dict().items())
    assert moved == ("reinforce" in parts)


def test_rl_after_sft_resumes_step_for_step_and_a_derived_run_starts_from_the_sft_weights(tmp_path):
    splits, sids = splits_table()
    catalog = Catalog(n_items=N_ITEMS, sids=sids, codebook_sizes=SIZES)
    cot = cot_for(tiny(), splits)
    settings = {**TINY, "max_steps": 3, "rl_users": 4, "rl_group": 4, "rl_eval_every": 2, "rl_lr": 1e-3}
    train = {**TINY_TRAIN, "max_epochs": 1, "eval_max_examples": 20}
    run = Experiment(model="lasar", tokenizer="rq_kmeans_4x256", eval_ks=(5,), eval_beam_width=5,
                     model_overrides={**settings, "rl_steps": 4}, train_overrides=train)
    events = []
    whole = train_experiment(run, splits, catalog, tmp_path / "whole", cot=cot,
                             callback=lambda e, p: events.append((e, p)))
    info = read_run_info(tmp_path / "whole")
    assert info["post_training"]["steps"] == 4 and len(info["post_training"]["evaluations"]) == 3  # steps 0, 2, 4
    assert len([p for e, p in events if e == "rl_step"]) == 4

    def crash(event, payload):
        if event == "rl_step" and payload["step"] == 3:
            raise Killed

    with pytest.raises(Killed):
        train_experiment(run, splits, catalog, tmp_path / "split", cot=cot, callback=crash)
    resumed = train_experiment(run, splits, catalog, tmp_path / "split", cot=cot)
    assert resumed.post_training.history == whole.post_training.history

    sft = train_experiment(Experiment(**{**run.__dict__, "model_overrides": settings}), splits, catalog,
                           tmp_path / "sft", cot=cot)
    derived = derive_experiment(run, splits, catalog, tmp_path / "derived", tmp_path / "sft", "pretrained", cot=cot)
    assert derived.info["derived_from"]["workdir"] == str(tmp_path / "sft") and sft.info["steps"] == whole.info["steps"]
    assert derived.post_training.history == whole.post_training.history  # the same SFT, then the same RL
