"""REG4Rec: any-order teacher forcing = the cached stepper, losses by hand, PARS end to end."""

import copy
import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

from genrec_ml.evaluation import evaluate_experiment
from genrec_ml.experiments import (
    Catalog,
    Experiment,
    build_experiment_model,
    read_run_info,
    split_examples,
    train_experiment,
)
from genrec_ml.models.reg4rec import Reg4Rec, Reg4RecConfig
from genrec_ml.models.registry import model_config
from genrec_ml.rl.grpo import GrpoConfig
from genrec_ml.rl.pars import pars_context, pars_step, path_log_probs
from genrec_ml.rl.rewards import Rewards
from tests.models.tiny_sets import SIZES, batch, set_catalog, tiny_reg4rec
from tests.test_experiments import successor_splits


def targets(model: Reg4Rec, users: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, k, (users,), generator=g) for k in model.vocab.codebook_sizes], dim=1)


def stepper_log_probs(model: Reg4Rec, data: dict, order: torch.Tensor, codes: torch.Tensor):
    """Per step: (log-prob of the step's code at its position, category log-probs), by the cached stepper."""
    stepper = model.stepper(data)
    state = stepper.start(len(order))
    picked, categories, last = [], [], (None, None)
    for step in range(order.shape[1]):
        log_probs, category, state = stepper.step(state, *last)
        picked.append(log_probs[torch.arange(len(order)), order[:, step], codes[:, step]])
        categories.append(category)
        last = (order[:, step], codes[:, step])
    return torch.stack(picked, dim=1), torch.stack(categories, dim=1)


def test_teacher_forcing_in_any_order_equals_the_cached_stepper():
    model = tiny_reg4rec(12)
    data = batch(model, users=3)
    order = torch.stack([torch.tensor(p + (3,)) for p in [(2, 0, 1), (1, 2, 0), (0, 1, 2)]])
    codes = targets(model, 3).gather(1, order)
    memory = model.encode(data["input_ids"], data["attention_mask"])
    logits, category_logits = model.path_outputs(memory, data["attention_mask"], order, codes)
    teacher = logits.log_softmax(-1).gather(2, codes[..., None])[..., 0]
    cached, categories = stepper_log_probs(model, data, order, codes)
    assert torch.allclose(teacher, cached, atol=1e-5)
    assert torch.allclose(category_logits.log_softmax(-1), categories, atol=1e-5)


def test_loss_is_token_ce_plus_category_ce_along_the_sampled_order():
    model = tiny_reg4rec(12, category_weight=0.5).train()
    data = batch(model, users=3) | {"targets": targets(model, 3), "target_items": torch.tensor([0, 5, 7])}
    torch.manual_seed(3)
    _, loss = model(data)
    torch.manual_seed(3)
    order = model.training_order(3)
    assert sorted(order[0, :3].tolist()) == [0, 1, 2] and (order[:, 3] == 3).all()
    model.eval()  # dropout is 0: the same network
    codes = data["targets"].gather(1, order)
    picked, categories = stepper_log_probs(model, data, order, codes)
    labels = model.item_categories[data["target_items"]]
    category = -categories.gather(2, labels[:, None, None].expand(-1, 4, 1)).mean()
    assert loss.item() == pytest.approx((-picked.mean() + 0.5 * category).item(), abs=1e-5)
    assert set(model.loss_parts) == {"token", "category"}


def test_without_crss_the_order_is_fixed_and_sampled_paths_are_permutations():
    fixed = tiny_reg4rec(12, dynamic_order=False).train()
    assert (fixed.training_order(4) == torch.arange(4)).all()
    model = tiny_reg4rec(12)
    torch.manual_seed(0)
    order, codes = model.sample_paths(batch(model, users=2), group=5)
    assert order.shape == codes.shape == (10, 3)
    assert all(sorted(row) == [0, 1, 2] for row in order.tolist())
    assert (codes < torch.tensor(model.vocab.codebook_sizes)[order]).all()
    torch.manual_seed(0)
    again, _ = model.sample_paths(batch(model, users=2), group=5)
    assert torch.equal(order, again)
    token, category = path_log_probs(model, batch(model, users=2), order, codes, 5)
    assert token.shape == (10, 3) and torch.allclose(category.sum(-1), torch.ones(10, 3))


def test_catalog_paths_are_item_token_sets_and_equal_free_sampling_when_every_set_is_an_item():
    model = tiny_reg4rec(12)
    sids = set_catalog(12)
    constraint = model.build_constraint(sids)
    torch.manual_seed(1)
    order, codes = model.sample_paths(batch(model, users=3), group=6, constraint=constraint)
    paths = {tuple(sorted(zip(o, c, strict=True))) for o, c in zip(order.tolist(), codes.tolist(), strict=True)}
    items = {tuple(enumerate(row[:3])) for row in sids.tolist()}
    assert paths <= items and len(paths) > 1
    # a catalog holding every token set allows every draw: the same stream gives the same paths
    every = torch.tensor([list(p) + [0] for p in itertools.product(*[range(k) for k in SIZES[:3]])])
    torch.manual_seed(2)
    free = model.sample_paths(batch(model, users=3), group=6)
    torch.manual_seed(2)
    full = model.sample_paths(batch(model, users=3), group=6, constraint=model.build_constraint(every))
    assert torch.equal(free[0], full[0]) and torch.equal(free[1], full[1])


def test_beam_paths_are_the_searchs_top_items_in_its_fill_order():
    model = tiny_reg4rec(12, corp=False)
    sids = set_catalog(12)
    constraint = model.build_constraint(sids)
    data = batch(model, users=3)
    order, codes = model.beam_paths(data, 4, constraint)
    result = model.search(data, constraint, beam_width=4, top_k=4)
    assert order.shape == codes.shape == (12, 3)
    assert torch.equal(order, result.orders[..., :3].flatten(0, 1))
    assert torch.equal(codes, sids[result.item_ids.flatten()].gather(1, order))
    assert all(sorted(row) == [0, 1, 2] for row in order.tolist())
    with pytest.raises(Exception, match="pars_paths"):
        tiny_reg4rec(12, pars_paths="greedy")


def test_profiles_are_the_papers_model_and_bad_categories_are_refused():
    config = model_config("reg4rec", "paper", {"codebook_sizes": (300,) * 8 + (3,), "n_items": 5, "n_categories": 4})
    assert (config.n_encoder_layers, config.n_decoder_layers, config.d_model, config.d_ff) == (1, 2, 128, 640)
    assert config.codebook_sizes == (300,) * 8 + (3,) and config.n_categories == 4
    model = Reg4Rec(Reg4RecConfig(codebook_sizes=(3, 3, 2), n_items=3, n_categories=2, d_model=8, n_heads=2, d_kv=4,
                                  d_ff=8))
    with pytest.raises(Exception, match="labels must lie"):
        model.set_item_categories([0, 1, 2])


SET_SIZES = (4, 4, 4, 1)
N_ITEMS = 48


def set_splits(n_users: int = 40, length: int = 7, seed: int = 0):
    """Users walking a successor permutation over items with distinct 3-token sets; categories by first code."""
    rng = np.random.default_rng(seed)
    every = np.array(list(itertools.product(range(4), range(4), range(4))))
    sids = np.concatenate([every[rng.permutation(64)[:N_ITEMS]], np.zeros((N_ITEMS, 1), dtype=int)], axis=1)
    splits = successor_splits(rng, N_ITEMS, n_users, length)
    vectors = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(3)] + [np.zeros((1, 3), np.float32)]
    catalog = Catalog(n_items=N_ITEMS, sids=sids, codebook_sizes=SET_SIZES, categories=sids[:, 0].copy(),
                      codeword_vectors=vectors)
    return splits, catalog


def reg4rec_experiment(**model) -> Experiment:
    settings = dict(n_user_buckets=4, d_model=16, n_heads=2, d_kv=8, d_ff=32, dropout=0.0, pars_steps=4,
                    pars_users=8, pars_group=4, pars_eval_every=2, pars_lr=1e-3) | model
    return Experiment(model="reg4rec", tokenizer="mpq", model_overrides=settings, eval_ks=(5, 10), eval_beam_width=10,
                      train_overrides=dict(lr=1e-2, warmup_steps=2, batch_size=32, max_epochs=2, eval_beam_width=10,
                                           progress=False, patience=0, eval_max_examples=None, log_every_steps=1,
                                           checkpoint_every_steps=3))


class Killed(Exception):
    pass


def test_pretraining_then_pars_keeps_both_weights_resumes_and_reports_corp(tmp_path):
    splits, catalog = set_splits()
    events = []
    trained = train_experiment(reg4rec_experiment(), splits, catalog, tmp_path / "whole",
                               callback=lambda e, p: events.append((e, p)))
    assert (tmp_path / "whole" / "pretrained.pt").is_file() and trained.checkpoint.is_file()
    info = read_run_info(tmp_path / "whole")
    assert info["post_training"]["steps"] == 4 and len(info["post_training"]["evaluations"]) == 3  # steps 0, 2, 4
    steps = [p for e, p in events if e == "pars_step"]
    assert len(steps) == 4 and {"reward_step", "reward_path", "reward_total", "kl"} <= set(steps[0])
    assert all(abs(s["reward_total"] - sum(s[f"reward_{n}"] for n in ("step", "category", "consistency", "path")))
               < 1e-5 for s in steps)

    def crash(event, payload):
        if event == "pars_step" and payload["step"] == 3:
            raise Killed

    with pytest.raises(Killed):
        train_experiment(reg4rec_experiment(), splits, catalog, tmp_path / "split", callback=crash)
    resumed = train_experiment(reg4rec_experiment(), splits, catalog, tmp_path / "split")
    assert resumed.post_training.history == trained.post_training.history
    assert resumed.post_training.evaluations == trained.post_training.evaluations

    evaluation = evaluate_experiment(trained.checkpoint, splits, catalog)
    rows = evaluation.metrics.set_index("metric")
    assert 0 <= rows.loc["corp_pruned_share", "value"] <= 1
    assert evaluation.search.step_positions.sum() > 0


@pytest.mark.parametrize("scale, paths", [(True, "sample"), (False, "sample"), (True, "catalog"), (True, "beam")])
def test_a_few_pars_steps_raise_the_mean_reward(scale, paths):
    splits, catalog = set_splits()
    experiment = reg4rec_experiment(pars_steps=0, pars_users=16, pars_group=8, pars_scale_rewards=scale,
                                    pars_paths=paths)
    model = build_experiment_model(experiment, catalog)
    examples = split_examples(splits, "loo")
    context = pars_context(model, examples["train"], catalog.sids, catalog.codeword_vectors, 20)
    context = replace(context, rewards=Rewards(), grpo=GrpoConfig(kl_beta=0.0))
    reference = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    config = experiment.train_config()
    means = [pars_step(model, reference, context, optimizer, config, step)["reward_total"] for step in range(40)]
    assert np.mean(means[-10:]) > np.mean(means[:10]) + 0.1


def test_pars_with_ladq_reports_each_steps_layer_formats(tmp_path):
    splits, catalog = set_splits()
    events = []
    train_experiment(reg4rec_experiment(pars_steps=2, pars_eval_every=2, ladq=True, ladq_every=1), splits, catalog,
                     tmp_path, callback=lambda e, p: events.append((e, p)))
    steps = [p for e, p in events if e == "pars_step"]
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in tiny_reg4rec(12).modules())
    assert len(steps) == 2 and all(s["ladq_fp32_layers"] + s["ladq_bf16_layers"] == n_linear for s in steps)


def test_a_wall_clock_cap_also_stops_pars(tmp_path):
    splits, catalog = set_splits()
    experiment = reg4rec_experiment(pars_steps=50)
    capped = Experiment(**{**experiment.__dict__, "train_overrides": {**experiment.train_overrides,
                                                                      "max_train_seconds": 0.01}})
    trained = train_experiment(capped, splits, catalog, tmp_path)
    assert trained.post_training.steps == 1 and len(trained.post_training.evaluations) == 2
