"""What every left-to-right Semantic-ID model shares at ranking time: batches onto its device, and
`recommend` = the constrained beam search over its `stepper` in eval mode (restored afterwards)."""

from __future__ import annotations

import torch
from torch import Tensor

from genrec_ml.decoding import Constraint, constrained_beam_search


class BeamRanking:
    """Mixin for an `nn.Module` with `device` and `stepper(batch) -> genrec_ml.decoding.Stepper`."""

    @torch.no_grad()
    def recommend(
        self, batch: dict[str, Tensor], constraint: Constraint, beam_width: int = 20, top_k: int = 10
    ) -> tuple[Tensor, Tensor]:
        """Top-`top_k` catalog items per user: `(item_ids (B, top_k), log_probs (B, top_k))`.

        `constraint` is usually `Trie.from_sids(sids, model.vocab.codebook_sizes)`. Runs in eval
        mode (no dropout) and restores the previous mode afterwards.
        """
        was_training = self.training
        self.eval()
        try:
            stepper = self.stepper(batch)
            return constrained_beam_search(stepper, constraint, stepper.batch_size, beam_width, top_k)
        finally:
            self.train(was_training)

    def _to_device(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
