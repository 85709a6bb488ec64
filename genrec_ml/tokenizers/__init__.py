"""Item tokenizers: embeddings (N, D) -> semantic-ID codes (N, L).

``TOKENIZERS`` maps a name to ``(ConfigClass, TokenizerClass)``; ``load_tokenizer`` reads any
checkpoint written by ``Tokenizer.save``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genrec_ml.errors import GenrecDataError
from genrec_ml.tokenizers.base import FitReport, Tokenizer
from genrec_ml.tokenizers.coba_rqvae import CoBaRQVAEConfig, CoBaRQVAETokenizer
from genrec_ml.tokenizers.collisions import coarse_clusters, disambiguate, utilization
from genrec_ml.tokenizers.letter import LetterConfig, LetterTokenizer
from genrec_ml.tokenizers.mpq import MPQConfig, MPQTokenizer
from genrec_ml.tokenizers.rq_kmeans import RQKMeansConfig, RQKMeansTokenizer
from genrec_ml.tokenizers.rq_vae import RQVAEConfig, RQVAETokenizer

TOKENIZERS: dict[str, tuple[type, type[Tokenizer]]] = {
    "rq_kmeans": (RQKMeansConfig, RQKMeansTokenizer),
    "rq_vae": (RQVAEConfig, RQVAETokenizer),
    "coba_rqvae": (CoBaRQVAEConfig, CoBaRQVAETokenizer),
    "letter": (LetterConfig, LetterTokenizer),
    "mpq": (MPQConfig, MPQTokenizer),
}


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Rebuild whichever tokenizer a checkpoint holds."""
    name = torch.load(Path(path), weights_only=True).get("tokenizer")
    if name not in TOKENIZERS:
        raise GenrecDataError(f"unknown tokenizer '{name}'; known: {sorted(TOKENIZERS)}", path=path)
    return TOKENIZERS[name][1].load(path)


__all__ = [
    "TOKENIZERS",
    "CoBaRQVAEConfig",
    "CoBaRQVAETokenizer",
    "FitReport",
    "LetterConfig",
    "LetterTokenizer",
    "MPQConfig",
    "MPQTokenizer",
    "RQKMeansConfig",
    "RQKMeansTokenizer",
    "RQVAEConfig",
    "RQVAETokenizer",
    "Tokenizer",
    "coarse_clusters",
    "disambiguate",
    "load_tokenizer",
    "utilization",
]
