"""Constrained decoding of semantic IDs: catalog constraints and model-agnostic beam search."""

from genrec_ml.decoding.beam_search import (
    Stepper,
    brute_force_topk,
    constrained_beam_search,
    teacher_forced_log_probs,
)
from genrec_ml.decoding.constraint import CatalogConstraint, Constraint
from genrec_ml.decoding.sids import validate_sids
from genrec_ml.decoding.trie import Trie

__all__ = [
    "CatalogConstraint",
    "Constraint",
    "Stepper",
    "Trie",
    "brute_force_topk",
    "constrained_beam_search",
    "teacher_forced_log_probs",
    "validate_sids",
]
