"""Every sequence model by name, so a checkpoint can rebuild the model it was saved from."""

from __future__ import annotations

from typing import Any

from torch import nn

from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.tiger import Tiger

# name -> model class; each class has `name` (this key) and `config_class` (its dataclass config)
MODELS: dict[str, type[nn.Module]] = {Tiger.name: Tiger}


def build_model(name: str, config: dict[str, Any]) -> nn.Module:
    """The model `name` built from `asdict(config)` as stored in a checkpoint (fresh weights)."""
    if name not in MODELS:
        raise GenrecConfigError("model_name", f"unknown model {name!r}; registered: {list(MODELS)}")
    cls = MODELS[name]
    return cls(cls.config_class(**config))
