"""Shared helpers for the asset tests: every asset and check, materialized in process."""

import contextlib
import functools
from pathlib import Path

import dagster as dg

from genrec_assets.defs.codebooks import assets as codebook_assets
from genrec_assets.defs.codebooks import checks as codebook_checks
from genrec_assets.defs.data import assets as data_assets
from genrec_assets.defs.data import checks as data_checks
from genrec_assets.defs.embeddings import assets as embedding_assets
from genrec_assets.defs.embeddings import checks as embedding_checks
from genrec_assets.defs.lasar import assets as lasar_assets
from genrec_assets.defs.lasar import checks as lasar_checks
from genrec_assets.defs.models.registry import MODEL_ASSETS, MODEL_CHECKS
from genrec_assets.defs.reproduction.assets import reproduction
from genrec_assets.defs.resources import Artifacts, DataRoot, Tracking, Warehouse

DATA_ASSETS = dg.load_assets_from_modules([data_assets, embedding_assets])
ALL_ASSETS = [*DATA_ASSETS, *codebook_assets.CODEBOOK_ASSETS, *MODEL_ASSETS, *lasar_assets.ASSETS, reproduction]
DATA_CHECKS = [*data_checks.ASSET_CHECKS, *embedding_checks.ASSET_CHECKS]
ALL_CHECKS = [*DATA_CHECKS, *codebook_checks.ASSET_CHECKS, *MODEL_CHECKS, *lasar_checks.ASSET_CHECKS]
CHECK_FUNCTIONS = {key.name: getattr(module, key.name) for module in (data_checks, embedding_checks)
                   for check in module.ASSET_CHECKS for key in check.check_keys}
DATA_SELECTION = [key for asset in DATA_ASSETS for key in asset.keys]
# Codebooks small enough for 400 items and a few seconds of CPU each.
TINY_CODEBOOK = {"coarse_clusters": 4, "settings": {"codebook_size": 16}}
TINY_TRAINED = {"coarse_clusters": 4, "settings": {"codebook_size": 16, "epochs": 20, "batch_size": 32}}
# A few hundred optimizer steps leave the VAE variants near ICR 0.2 on 400 similar synthetic texts,
# so the tiny runs check the ICR floor at 0.1 (the default 0.5 holds for real catalogs).
TINY_ICR_FLOOR = {"config": {"floor": 0.1}}
TINY_CODEBOOKS = {"ops": {
    "rq_kmeans_codebook": {"config": TINY_CODEBOOK},
    "rq_vae_codebook": {"config": TINY_TRAINED},
    "coba_rqvae_codebook": {"config": TINY_TRAINED},
    "letter_codebook": {"config": {**TINY_TRAINED, "collab_dim": 8}},
    "mpq_codebook": {"config": TINY_TRAINED},
    "rq_vae_8x300_codebook": {"config": TINY_TRAINED},
    "rq_kmeans_4x256_codebook": {"config": TINY_CODEBOOK},
    **{f"{variant}_codebook_icr_above_floor": TINY_ICR_FLOOR
       for variant in ("rq_kmeans", "rq_vae", "coba_rqvae", "letter", "mpq", "rq_vae_8x300", "rq_kmeans_4x256")},
}}
TINY = {"ops": {"raw_data": {"config": {"synthetic_items": 400, "synthetic_users": 300}}}}
# A model small enough to train for two epochs on the tiny partition in seconds.
TINY_MODEL = {"d_model": 16, "n_heads": 2, "d_kv": 8, "d_ff": 32, "n_encoder_layers": 1, "n_decoder_layers": 1,
              "n_user_buckets": 16}
TINY_TRAIN = {"max_epochs": 2, "batch_size": 64, "warmup_steps": 5, "lr": 0.01, "progress": False,
              "eval_max_examples": 100, "eval_beam_width": 10}


# A decoder-only model of the same tiny size (MiniOneRec)
TINY_DECODER = {"n_layers": 1, "d_model": 16, "n_heads": 2, "n_kv_heads": 1, "head_dim": 8, "d_ff": 32}

# REG4Rec's post-training, a few steps of it
TINY_PARS = {"pars_steps": 4, "pars_users": 16, "pars_group": 4, "pars_eval_every": 2}


def tiny_training(prefix: str, tokenizer: str = "rq_kmeans", model_settings=None) -> dict:
    """Run config of `<prefix>_checkpoint` / `<prefix>_metrics` for a quick run on the tiny partition."""
    settings = (TINY_DECODER if prefix == "minionerec" else TINY_MODEL) if model_settings is None else model_settings
    if prefix.startswith("reg4rec") and model_settings is None:
        settings = {**settings, **{k: v for k, v in TINY_PARS.items() if prefix != "reg4rec_wo_pars"}}
    return {f"{prefix}_checkpoint": {"config": {"tokenizer": tokenizer, "threads": 1, "model_settings": settings,
                                                "train_settings": TINY_TRAIN}},
            f"{prefix}_metrics": {"config": {"threads": 1}}}


_KEEP_OPEN = contextlib.ExitStack()  # referenced here, so the instance's temp folder outlives every test


@functools.cache
def shared_instance() -> dg.DagsterInstance:
    """One instance for the whole test process, where the dataset partitions live. Dagster caches
    its definitions-load context process-wide with a weak reference to an instance, so an instance
    per test would be collected under that context and break the next materialization; this one is
    never closed. `instance_for_test` (not `ephemeral`) because schedule contexts need an instance ref."""
    return _KEEP_OPEN.enter_context(dg.instance_for_test())


def materialize(warehouse_path, partition="synthetic", run_config=None, data_root="", selection=None,
                raise_on_error=True):
    """Run config defaults to the tiny synthetic size for full runs and to none for selections."""
    if run_config is None:
        run_config = TINY if selection is None else {}
    if selection is None:
        selection = DATA_SELECTION
    runtime = Path(warehouse_path).parent
    instance = shared_instance()
    if not instance.has_dynamic_partition("datasets", partition):
        instance.add_dynamic_partitions("datasets", [partition])
    return dg.materialize(
        [*ALL_ASSETS, *ALL_CHECKS], partition_key=partition, run_config=run_config, selection=selection,
        resources={"warehouse": Warehouse(path=str(warehouse_path)), "data_root": DataRoot(path=str(data_root)),
                   "artifacts": Artifacts(path=str(runtime / "artifacts")),
                   "tracking": Tracking(tracking_uri=f"sqlite:///{runtime / 'mlflow.db'}",
                                        artifact_root=str(runtime / "mlflow-artifacts"))},
        raise_on_error=raise_on_error, instance=instance,
    )


def run_check(warehouse_path, name: str, dataset: str = "synthetic", tokenizer: str | None = None) -> bool:
    """Run one check's logic directly against what the warehouse holds now."""
    target = Warehouse(path=str(warehouse_path))
    if tokenizer is None:
        return CHECK_FUNCTIONS[name](target, dataset).passed
    if name == "icr_above_floor":
        floor = codebook_checks.IcrFloorConfig().floor
        return codebook_checks.icr_above_floor(target, dataset, tokenizer, floor).passed
    return getattr(codebook_checks, name)(target, dataset, tokenizer).passed
