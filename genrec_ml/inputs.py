"""Where an experiment's inputs come from: the warehouse (what the Dagster assets read), or a bundle,
a folder of plain files that carries them to a machine with neither Dagster nor DuckDB (a leased GPU).

    bundle/
      bundle.json     dataset, tokenizer, scheme, n_coarse, row counts, format version
      splits.parquet  the dataset's `splits` rows of one scheme (split, user_index, target_item_index, history, ...)
      catalog.npz     n_items; SID models: Semantic IDs, codebook sizes, S²GR's coarse clusters, item
                      category labels and codeword vectors (REG4Rec)
      cot_texts.parquet  where the warehouse has them: the teacher chains of thought of the scheme's training
                      examples (user_index, target_position, segments): LASAR's and the explicit-CoT
                      baseline's supervision (LASAR's anchors are computed from them where it trains)

Reading a bundle needs pandas, pyarrow and numpy only; the warehouse functions import DuckDB when called.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.experiments import Catalog, catalog_from_rows, split_examples, with_coarse_clusters

BUNDLE_FORMAT = 1
META, SPLITS, CATALOG, COT = "bundle.json", "splits.parquet", "catalog.npz", "cot_texts.parquet"


@dataclass
class Bundle:
    splits: pd.DataFrame  # `splits` rows of one scheme, as the warehouse holds them
    catalog: Catalog
    meta: dict[str, Any]  # dataset, tokenizer, scheme, n_coarse, rows, cot_rows, format
    cot_texts: pd.DataFrame | None = None  # user_index, target_position, segments; None where not exported
    folder: Path | None = None  # where it was read from

    @property
    def dataset(self) -> str:
        return self.meta["dataset"]


def warehouse_catalog(con, tokenizer_folder: str | Path | None, dataset: str, tokenizer: str | None,
                      n_coarse: int | None = None) -> Catalog:
    """The catalog of `dataset` under codebook `tokenizer` (None: item-id models, item count only).

    `tokenizer_folder` holds the codebook asset's files (tokenizer.pt, coarse_clusters.npz);
    `n_coarse` re-clusters its codes at that C for S²GR instead of the stored clusters.
    """
    from genrec_ml.warehouse import item_count, query, table_exists

    n_items = item_count(con, dataset)
    if not n_items:
        raise LookupError(f"no items for dataset {dataset!r}; materialize its `items` asset first")
    if tokenizer is None:
        return catalog_from_rows(n_items)
    params = {"dataset": dataset, "tokenizer": tokenizer}
    sid_rows = query(con, "item_semantic_ids_of_tokenizer", **params) if table_exists(
        con, "item_semantic_ids") else pd.DataFrame()
    if sid_rows.empty:
        raise LookupError(f"no {tokenizer} Semantic IDs for {dataset}: materialize {tokenizer}_codebook first")
    sizes = query(con, "codebook_sizes_of_tokenizer", **params)["codebook_size"].tolist()
    folder = Path(tokenizer_folder) if tokenizer_folder is not None else None
    clusters = folder / "coarse_clusters.npz" if folder is not None else None
    columns = set(query(con, "items_column_names")["column_name"])
    has_categories = "category" in columns
    catalog = catalog_from_rows(n_items, sid_rows, tuple(sizes), clusters if clusters and clusters.is_file() else None,
                                categories=query(con, "item_categories", dataset=dataset) if has_categories else None)
    if folder is not None and (folder / "tokenizer.pt").is_file():
        catalog.codeword_vectors = codeword_vectors(folder / "tokenizer.pt")
    if "title" in columns:  # the decoder-only models' words and title <-> SID tasks
        titles = query(con, "item_titles", dataset=dataset)["title"]
        catalog.titles = tuple("" if t is None else str(t) for t in titles)
        catalog.text_words = catalog_words(catalog.titles)
    if not n_coarse:
        return catalog
    if folder is None or not (folder / "tokenizer.pt").is_file():
        raise LookupError(f"re-clustering at C = {n_coarse} needs the {tokenizer} codebook's tokenizer.pt in "
                          f"{folder}: materialize {tokenizer}_codebook for {dataset} first")
    return with_coarse_clusters(catalog, folder / "tokenizer.pt", n_coarse)


def catalog_words(titles) -> tuple[str, ...]:
    """The decoder-only models' whole-word tokens: the template teacher's words, then the titles' most frequent."""
    from genrec_ml.text.cot import template_words
    from genrec_ml.text.prompt import MAX_TITLE_WORDS, text_vocabulary

    return text_vocabulary((t for t in titles if isinstance(t, str)), MAX_TITLE_WORDS, template_words())


def codeword_vectors(tokenizer_path: Path) -> list[np.ndarray]:
    """Every quantiser level's codeword vectors `(K_l, d)` of a saved codebook."""
    from genrec_ml.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    return [tokenizer.codebook_vectors(level) for level in range(len(tokenizer.codebook_sizes))]


def warehouse_splits(con, dataset: str) -> pd.DataFrame:
    from genrec_ml.warehouse import read_partition

    return read_partition(con, "splits", dataset)


def export_bundle(con, tokenizer_folder: str | Path | None, dataset: str, tokenizer: str | None, folder: str | Path,
                  scheme: str = "loo", n_coarse: int | None = None, cot: bool = True) -> Path:
    """Write `dataset`'s splits (one scheme) and catalog from the warehouse into a bundle folder, with the
    teacher CoTs where the warehouse has them unless `cot` is False (only LASAR and the explicit-CoT baseline
    read them; on amazon-beauty they are 4/5 of a bundle's bytes)."""
    catalog = warehouse_catalog(con, tokenizer_folder, dataset, tokenizer, n_coarse)
    splits = warehouse_splits(con, dataset)
    return write_bundle(folder, splits, catalog, dataset=dataset, tokenizer=tokenizer, scheme=scheme,
                        n_coarse=n_coarse, cot_texts=warehouse_cot_texts(con, dataset, scheme) if cot else None)


def warehouse_cot_texts(con, dataset: str, scheme: str) -> pd.DataFrame | None:
    """The `cot_texts` rows of `dataset` and `scheme` (user_index, target_position, segments), None if none."""
    from genrec_ml.warehouse import query, table_exists

    if not table_exists(con, "cot_texts"):
        return None
    rows = query(con, "cot_text_rows", dataset=dataset, scheme=scheme)
    return rows if len(rows) else None


def write_bundle(folder: str | Path, splits: pd.DataFrame, catalog: Catalog, *, dataset: str, tokenizer: str | None,
                 scheme: str = "loo", n_coarse: int | None = None, cot_texts: pd.DataFrame | None = None) -> Path:
    """Replace `folder` with a bundle of `splits` (rows of `scheme`), `catalog` and, when given, the teacher
    chains of thought; all files or none."""
    folder = Path(folder)
    chosen = pd.concat(split_examples(splits, scheme).values(), ignore_index=True).assign(scheme=scheme)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    chosen.to_parquet(staging / SPLITS, index=False)
    arrays: dict[str, np.ndarray] = {"n_items": np.asarray(catalog.n_items)}
    if catalog.sids is not None:
        arrays["sids"] = catalog.sids
        arrays["codebook_sizes"] = np.asarray(catalog.codebook_sizes, dtype=np.int64)
    for level, (centroids, assignment) in enumerate(zip(catalog.coarse_centroids or [],
                                                         catalog.coarse_assignments or [], strict=True)):
        arrays[f"centroids_{level}"], arrays[f"assignment_{level}"] = centroids, assignment
    if catalog.categories is not None:
        arrays["categories"] = catalog.categories
    for level, vectors in enumerate(catalog.codeword_vectors or []):
        arrays[f"codewords_{level}"] = vectors
    if catalog.text_words is not None:
        arrays["text_words"] = np.asarray(catalog.text_words, dtype=str)
    if catalog.titles is not None:
        arrays["titles"] = np.asarray(catalog.titles, dtype=str)
    np.savez(staging / CATALOG, **arrays)
    if cot_texts is not None:
        cot_texts = cot_texts[["user_index", "target_position", "segments"]].reset_index(drop=True)
        cot_texts.assign(segments=[list(map(str, s)) for s in cot_texts["segments"]]).to_parquet(staging / COT,
                                                                                             index=False)
    meta = {"format": BUNDLE_FORMAT, "dataset": dataset, "tokenizer": tokenizer, "scheme": scheme,
            "n_coarse": n_coarse, "n_items": catalog.n_items, "rows": len(chosen),
            "cot_rows": 0 if cot_texts is None else len(cot_texts)}
    (staging / META).write_text(json.dumps(meta, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    return folder


def read_bundle(folder: str | Path) -> Bundle:
    """A bundle written by `write_bundle`, checked against its own bundle.json."""
    folder = Path(folder)
    for name in (META, SPLITS, CATALOG):
        if not (folder / name).is_file():
            raise GenrecDataError("bundle file missing; write the bundle with `python -m genrec_ml.cli export`",
                                  path=folder / name)
    try:
        meta = json.loads((folder / META).read_text())
    except json.JSONDecodeError as err:
        raise GenrecDataError(f"not JSON: {err}", path=folder / META) from err
    for key in ("format", "dataset", "tokenizer", "scheme", "n_items", "rows"):
        if key not in meta:
            raise GenrecDataError("bundle metadata lacks this key", path=folder / META, field=key)
    if meta["format"] != BUNDLE_FORMAT:
        raise GenrecDataError(f"bundle format {meta['format']}, this code reads {BUNDLE_FORMAT}: export it again",
                              path=folder / META, field="format")
    splits = pd.read_parquet(folder / SPLITS)
    if len(splits) != meta["rows"]:
        raise GenrecDataError(f"{len(splits)} rows, bundle.json says {meta['rows']}: the bundle is incomplete",
                              path=folder / SPLITS)
    split_examples(splits, meta["scheme"])  # names a missing column or split
    cot_texts = None
    if meta.get("cot_rows"):  # bundles written before CoT texts travelled have no such key
        if not (folder / COT).is_file():
            raise GenrecDataError(f"bundle.json counts {meta['cot_rows']} CoT rows but the file is missing",
                                  path=folder / COT)
        cot_texts = pd.read_parquet(folder / COT)
        if len(cot_texts) != meta["cot_rows"]:
            raise GenrecDataError(f"{len(cot_texts)} rows, bundle.json says {meta['cot_rows']}: the bundle is "
                                  "incomplete", path=folder / COT)
        cot_texts["segments"] = [list(s) for s in cot_texts["segments"]]
    return Bundle(splits, _read_catalog(folder / CATALOG, meta), meta, cot_texts, folder)


def bundle_cot(bundle: Bundle, model: str, stage1: str | Path | None, device: str = "auto") -> pd.DataFrame | None:
    """What `train_experiment(cot=...)` takes for `model` (its class's `cot_input`) from `bundle`: nothing, the
    chains of thought as text (the explicit-CoT baseline), or LASAR's anchor states computed from them under
    the Stage-1 checkpoint `stage1` (the `cot_anchor_states` asset's computation, done where it trains)."""
    from genrec_ml.models.registry import model_class

    kind = getattr(model_class(model), "cot_input", "")
    if not kind:
        return None
    if bundle.cot_texts is None:
        raise GenrecDataError(f"{model} trains on the teacher chains of thought, which this bundle lacks: "
                              "materialize cot_texts, then export the bundle again", path=bundle.folder)
    if kind == "text":
        return bundle.cot_texts
    if stage1 is None:
        raise GenrecConfigError("init_from", f"{model}'s anchor states come from its Stage-1 model: pass "
                                "--init-from <a finished minionerec workdir>")
    import torch

    from genrec_ml.text.anchors import anchors_by_example, stage1_anchor_rows

    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    return anchors_by_example(stage1_anchor_rows(stage1, bundle.cot_texts, device=device))


def _read_catalog(path: Path, meta: dict[str, Any]) -> Catalog:
    stored = np.load(path)
    n_items = int(stored["n_items"])
    if n_items != meta["n_items"]:
        raise GenrecDataError(f"{n_items} items, bundle.json says {meta['n_items']}", path=path, field="n_items")
    catalog = Catalog(n_items=n_items)
    if "sids" in stored.files:
        catalog.sids = stored["sids"].astype(np.int64)
        catalog.codebook_sizes = tuple(int(size) for size in stored["codebook_sizes"])
        if catalog.sids.shape[0] != n_items:
            raise GenrecDataError(f"{catalog.sids.shape[0]} SID rows for {n_items} items", path=path, field="sids")
    elif meta["tokenizer"] is not None:
        raise GenrecDataError(f"bundle of codebook {meta['tokenizer']!r} holds no Semantic IDs", path=path,
                              field="sids")
    levels = len([key for key in stored.files if key.startswith("centroids_")])
    if levels:
        catalog.coarse_centroids = [stored[f"centroids_{level}"] for level in range(levels)]
        catalog.coarse_assignments = [stored[f"assignment_{level}"] for level in range(levels)]
    if "categories" in stored.files:
        catalog.categories = stored["categories"].astype(np.int64)
        if catalog.categories.shape != (n_items,):
            raise GenrecDataError(f"{catalog.categories.shape} category labels for {n_items} items", path=path,
                                  field="categories")
    levels = len([key for key in stored.files if key.startswith("codewords_")])
    if levels:
        catalog.codeword_vectors = [stored[f"codewords_{level}"] for level in range(levels)]
    if "text_words" in stored.files:
        catalog.text_words = tuple(str(w) for w in stored["text_words"])
    if "titles" in stored.files:
        catalog.titles = tuple(str(t) for t in stored["titles"])
    return catalog
