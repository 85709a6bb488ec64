"""Every sequence model by name, so a checkpoint can rebuild the model it was saved from.

`model_config` builds any registered model's config from a profile and the catalog it will
rank, so the Dagster assets and the benchmarks create every model the same way.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from torch import nn

from genrec_ml.errors import GenrecConfigError
from genrec_ml.models.bert4rec import BERT4Rec
from genrec_ml.models.care import Care
from genrec_ml.models.caser import Caser
from genrec_ml.models.explicit_cot import ExplicitCot
from genrec_ml.models.gru4rec import GRU4Rec
from genrec_ml.models.lasar import Lasar
from genrec_ml.models.minionerec import MiniOneRec
from genrec_ml.models.rearec import ReaRec
from genrec_ml.models.reg4rec import Reg4Rec
from genrec_ml.models.s2gr import S2gr
from genrec_ml.models.sasrec import SASRec
from genrec_ml.models.tiger import PROFILES as SID_PROFILES
from genrec_ml.models.tiger import Tiger

# name -> model class; each class has `name` (this key) and `config_class` (its dataclass config)
MODELS: dict[str, type[nn.Module]] = {
    cls.name: cls for cls in (Tiger, S2gr, Care, Reg4Rec, MiniOneRec, Lasar, ExplicitCot,
                              SASRec, GRU4Rec, Caser, BERT4Rec, ReaRec)
}

# Item-id models take their architecture from their config defaults (RecBole's, sized for
# Amazon-scale data) under both profiles; the profiles differ in training budget only.
ITEM_PROFILES: dict[str, dict[str, Any]] = {"smoke": {}, "cpu": {}, "paper": {}}


def build_model(name: str, config: dict[str, Any]) -> nn.Module:
    """The model `name` built from `asdict(config)` as stored in a checkpoint (fresh weights)."""
    cls = model_class(name)
    return cls(cls.config_class(**config))


def model_class(name: str) -> type[nn.Module]:
    if name not in MODELS:
        raise GenrecConfigError("model", f"unknown model {name!r}; registered: {sorted(MODELS)}")
    return MODELS[name]


def input_kind(name: str) -> str:
    """"sids" for models that generate Semantic IDs, "items" for models that score item ids."""
    return getattr(model_class(name), "input_kind", "sids")


def model_config(name: str, profile: str, catalog: dict[str, Any], overrides: dict[str, Any] | None = None):
    """Config of model `name` under `profile`, sized for `catalog`, with `overrides` on top.

    `catalog` holds what the data decides (`codebook_sizes`, `n_items`, `n_coarse`, ...); each
    entry is used only where the config class has that field. Semantic-ID models start from
    TIGER's profile (smoke / cpu / paper) for the fields they share with it, unless the class has
    `profiles` of its own. Unknown override fields
    are errors that list the known ones.
    """
    config_class = model_class(name).config_class
    known = {f.name for f in fields(config_class)}
    own = getattr(model_class(name), "profiles", None)  # a model with an architecture of its own (REG4Rec)
    sid_profiles = own if own is not None else SID_PROFILES
    profiles = ITEM_PROFILES if input_kind(name) == "items" else {k: asdict(v) for k, v in sid_profiles.items()}
    if profile not in profiles:
        raise GenrecConfigError("profile", f"unknown profile {profile!r}; choose from {sorted(profiles)}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise GenrecConfigError(unknown[0], f"{name} has no such setting; known: {sorted(known)}")
    base = {k: v for k, v in {**profiles[profile], **catalog}.items() if k in known}
    # JSON run config has lists where the dataclasses hold tuples
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return config_class(**{**base, **overrides})
