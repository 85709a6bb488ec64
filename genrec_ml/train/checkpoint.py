"""Checkpoints that rebuild their model: `asdict(config)` beside the weights, written atomically.

A checkpoint is a dict loadable with `torch.load(weights_only=True)`:

    model_name, model_config, model_state     always (enough for `load_checkpoint`)
    optimizer, scheduler, rng, progress, ...  last.pt only (enough to resume training)
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.models.registry import build_model


def model_payload(model: nn.Module) -> dict[str, Any]:
    """What rebuilds `model`: its registry name, `asdict(config)` and weights."""
    return {"model_name": model.name, "model_config": asdict(model.config), "model_state": model.state_dict()}


def save_atomic(payload: dict[str, Any], path: Path) -> Path:
    """torch.save to a temporary file, then rename: a crash never leaves a half-written checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(payload, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise GenrecDataError("no checkpoint at this path; train first or point at last.pt / best.pt", path=path)
    return torch.load(path, map_location=map_location, weights_only=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """The model stored in `path` (last.pt or best.pt), rebuilt from its config, in eval mode."""
    checkpoint = read_checkpoint(path, map_location)
    model = build_model(checkpoint["model_name"], checkpoint["model_config"])
    model.load_state_dict(checkpoint["model_state"])
    return model.to(map_location).eval()


def warm_start(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load another model's weights into `model` where they fit (LASAR's Stage 2 from MiniOneRec's Stage 1):
    every stored tensor must match one of `model`'s, and only `model.fresh_modules` (name prefixes) may
    stay freshly initialised. Returns what run.json records: the path, the source model, the fresh tensors."""
    checkpoint = read_checkpoint(path)
    try:
        missing, unexpected = model.load_state_dict(checkpoint["model_state"], strict=False)
    except RuntimeError as error:  # a shape mismatch: another architecture
        raise GenrecConfigError("init_from", f"{checkpoint['model_name']} weights in {path} do not fit "
                                f"{model.name}: {str(error).splitlines()[-1].strip()}") from error
    fresh = tuple(getattr(model, "fresh_modules", ()))
    stray = [name for name in missing if not name.startswith(fresh)]
    if unexpected or stray:
        raise GenrecConfigError("init_from", f"{checkpoint['model_name']} weights in {path} do not fit {model.name}: "
                                f"unexpected {unexpected[:3]}, missing {stray[:3]}")
    return {"path": str(path), "model": checkpoint["model_name"], "fresh": sorted(missing)}


def rng_states() -> dict[str, Any]:
    """Every global random stream a training step may draw from (dropout, shuffles)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        # numpy's key array as a tensor keeps the checkpoint loadable with weights_only=True
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(_as_python_state(states["python"]))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


def _as_python_state(state) -> tuple:
    # a round trip through torch.save may turn the inner tuple into a list; random.setstate needs tuples
    version, internal, gauss = state
    return version, tuple(internal), gauss
