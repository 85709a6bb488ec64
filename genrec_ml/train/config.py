"""How a sequence model is trained: one dataclass, stored in checkpoints as `asdict(config)`."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from genrec_ml.errors import GenrecConfigError

EVAL_UNITS = ("epoch", "step")
SCHEDULES = ("cosine", "inverse_sqrt")


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 1e-3  # peak learning rate, reached after warmup
    weight_decay: float = 0.035  # AdamW decoupled decay on weight matrices and embeddings, not norms
    warmup_steps: int = 100  # linear warmup from 0, then cosine decay to min_lr_ratio * lr
    schedule: str = "cosine"  # or "inverse_sqrt": constant lr for warmup_steps, then lr * sqrt(warmup / step)
    min_lr_ratio: float = 0.1  # floor of the cosine: late epochs still learn when early stopping decides the end
    batch_size: int = 256  # examples per optimizer step (per process under DDP)
    group_by_length: bool = True  # batches of similar history length (HF's group_by_length); False: random
    log_every_steps: int = 50  # mean training loss reported (and read from the device) every N steps
    max_epochs: int = 20
    max_steps: int | None = None  # caps optimizer steps (and sets the schedule's length); None: max_epochs
    # Wall-clock cap on training (validation included), for a GPU window of fixed length: the run then
    # stops as if early-stopped and keeps its best validated weights. Makes the step count depend on the
    # machine, so run.json records the steps taken; None: no cap (the same config, the same run).
    max_train_seconds: float | None = None
    eval_every: int = 1  # validate every this many eval_units
    eval_unit: str = "epoch"  # "epoch" or "step"
    patience: int = 5  # validations without improving `monitor` before stopping; 0 never stops early
    monitor: str = "ndcg@10"  # validation metric that picks best.pt and drives early stopping
    checkpoint_every_steps: int = 500  # write last.pt every N steps (and at the end)
    seed: int = 0  # seeds python, numpy, torch and the per-epoch data order
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    bf16: bool = True  # bfloat16 autocast for training steps on CUDA; CPU always runs float32
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    max_history: int = 20  # most recent history items fed to the encoder
    eval_beam_width: int = 20  # beams kept by the validation beam search
    eval_ks: tuple[int, ...] = (5, 10)  # cut-offs of the validation metrics
    eval_batch_size: int = 256  # users per validation beam search
    eval_max_examples: int | None = None  # validate on the first N valid examples; None: all
    progress: bool = True  # tqdm bars (rank 0 only)

    def __post_init__(self):
        object.__setattr__(self, "eval_ks", tuple(int(k) for k in self.eval_ks))
        for name in ("batch_size", "max_epochs", "eval_every", "checkpoint_every_steps", "max_history",
                     "eval_batch_size", "log_every_steps"):
            if getattr(self, name) < 1:
                raise GenrecConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "weight_decay", "warmup_steps", "patience", "grad_clip"):
            if getattr(self, name) < 0:
                raise GenrecConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise GenrecConfigError("min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        if self.max_train_seconds is not None and self.max_train_seconds <= 0:
            raise GenrecConfigError("max_train_seconds", f"must be > 0 or None, got {self.max_train_seconds}")
        if self.max_steps is not None and self.max_steps < 1:
            raise GenrecConfigError("max_steps", f"must be >= 1 or None, got {self.max_steps}")
        if self.schedule not in SCHEDULES:
            raise GenrecConfigError("schedule", f"must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.eval_unit not in EVAL_UNITS:
            raise GenrecConfigError("eval_unit", f"must be one of {EVAL_UNITS}, got {self.eval_unit!r}")
        self._check_eval()

    def _check_eval(self) -> None:
        if not self.eval_ks or min(self.eval_ks) < 1:
            raise GenrecConfigError("eval_ks", f"needs positive cut-offs, got {self.eval_ks}")
        if self.eval_beam_width < max(self.eval_ks):
            raise GenrecConfigError(
                "eval_beam_width",
                f"{self.eval_beam_width} beams cannot rank {max(self.eval_ks)} items; raise it to >= max(eval_ks)",
            )
        name, _, k = self.monitor.partition("@")
        if name not in ("recall", "ndcg", "mrr") or (k and (not k.isdigit() or int(k) not in self.eval_ks)):
            raise GenrecConfigError(
                "monitor", f"{self.monitor!r} is not a computed metric; use recall@K, ndcg@K (K in eval_ks) or mrr"
            )


TRAIN_PROFILES: dict[str, TrainConfig] = {
    # minutes on a CPU with the smoke model: two epochs, validated on 2,000 users after each
    "smoke": TrainConfig(lr=2e-3, warmup_steps=100, max_epochs=2, patience=2, checkpoint_every_steps=200,
                         eval_max_examples=2_000),
    # One CPU core, about 45 minutes on amazon-beauty with the `cpu` model (genrec_ml.models.tiger):
    # 4 epochs of its 131k training examples (measured: 51 min on a core shared with other runs,
    # 2026-12-01), cosine over those 4 epochs so the budget ends annealed, validated on 2,000 users
    # after each.
    "cpu": TrainConfig(lr=2e-3, warmup_steps=200, max_epochs=4, patience=2, checkpoint_every_steps=200,
                       eval_max_examples=2_000),
    # TIGER (Rajput et al. 2023): batch 256, lr 0.01 for the first 10k steps then inverse square root decay, 200k steps.
    # Trained until validation NDCG@10 stops improving (10 validations, 50k steps, without a gain), the
    # paper's 200k steps only a cap; the schedule does not depend on the cap, so an early stop follows
    # the paper's curve. AdamW's weight decay follows public reproductions (the paper gives none).
    "paper": TrainConfig(
        lr=0.01, warmup_steps=10_000, schedule="inverse_sqrt", max_epochs=10_000, max_steps=200_000,
        eval_every=5_000, eval_unit="step", patience=10, checkpoint_every_steps=2_000,
    ),
}


# Item-id baselines (SASRec, GRU4Rec, ...): RecBole's recipe, lr 1e-3 without warmup, validation
# every epoch and patience 10; `smoke` shares the SID models' short budget.
_RECBOLE = TrainConfig(lr=1e-3, warmup_steps=0, min_lr_ratio=1.0, max_epochs=200, patience=10,
                       checkpoint_every_steps=2_000)
ITEM_TRAIN_PROFILES: dict[str, TrainConfig] = {
    "smoke": TRAIN_PROFILES["smoke"],
    "paper": _RECBOLE,
    "cpu": _RECBOLE,  # item-id models converge on one core: their cpu budget is the paper's
}
PROFILES_BY_KIND = {"sids": TRAIN_PROFILES, "items": ITEM_TRAIN_PROFILES}


def train_config(profile: str, kind: str = "sids", **overrides) -> TrainConfig:
    """A profile's training config for models of `kind` ("sids" or "items") with any field overrides."""
    profiles = PROFILES_BY_KIND[kind]
    if profile not in profiles:
        raise GenrecConfigError("profile", f"unknown profile {profile!r}; choose from {list(profiles)}")
    known = set(TrainConfig.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise GenrecConfigError(unknown[0], f"not a training setting; known: {sorted(known)}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(profiles[profile], **overrides)


def planned_steps(config: TrainConfig, n_train: int, world_size: int = 1) -> int:
    """Optimizer steps of a run of `n_train` examples unless early stopping ends it first: each of
    `world_size` torchrun ranks takes its shard of every epoch's batches."""
    steps = config.max_epochs * steps_per_epoch(config, n_train, world_size)
    return min(steps, config.max_steps) if config.max_steps is not None else steps


def steps_per_epoch(config: TrainConfig, n_train: int, world_size: int = 1) -> int:
    return math.ceil(math.ceil(n_train / config.batch_size) / world_size)
