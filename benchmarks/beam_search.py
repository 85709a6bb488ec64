"""Constrained beam search: genrec's batched trie search vs HF `generate` with `prefix_allowed_tokens_fn`.

Both decode the same TIGER weights (an HF T5) for the same users. HF's generate normalises
log-probs over the whole vocabulary; genrec's over the level's codebook, so a forward hook on
the HF model masks every token outside the level it is about to emit: both then accumulate the
same true log-probabilities, and the top-K lists must be identical (checked, not assumed).

Where genrec's time goes differs: HF keeps cross-attention keys/values per beam (the encoder
memory copied and read W times per step), genrec's stepper keeps them once per user and lets all
of a user's beams attend to them as one block (`genrec_ml/models/beam_decoder.py`); the trie
masks are tensors, where HF calls `prefix_allowed_tokens_fn` once per beam per step.

    python benchmarks/beam_search.py                       # CPU, batch 256, beams 20 and 50
    python benchmarks/beam_search.py --device cuda --batches 4
    python benchmarks/beam_search.py --checkpoint .genrec/artifacts/amazon-beauty/models/tiger/best.pt

The catalog is amazon-beauty's rq_vae SIDs when the warehouse has them, else random SIDs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from genrec_ml.data.sequences import SequenceDataset, collate
from genrec_ml.decoding import Trie
from genrec_ml.models.tiger import Tiger, tiger_config
from genrec_ml.train.checkpoint import load_checkpoint
from genrec_ml.vocab import BOS, resolve_codebook_sizes

REPO = Path(__file__).resolve().parents[1]


def catalog(n_items: int, seed: int) -> np.ndarray:
    path = REPO / ".genrec" / "warehouse.duckdb"
    if path.is_file():
        from genrec_ml import warehouse

        with warehouse.connect(path, read_only=True) as con:
            rows = warehouse.query(con, "item_semantic_ids_of_tokenizer", dataset="amazon-beauty", tokenizer="rq_vae")
        if len(rows):
            levels = int(rows["level"].max()) + 1
            print(f"catalog: amazon-beauty rq_vae SIDs from {path}")
            return rows["code"].to_numpy().reshape(-1, levels).astype(np.int64)
    rng = np.random.default_rng(seed)
    codes = np.unique(rng.integers(0, 256, (n_items * 2, 3)), axis=0)[:n_items]
    print(f"catalog: {len(codes)} random SIDs (no amazon-beauty codebook in the warehouse)")
    return np.concatenate([codes, np.zeros((len(codes), 1), dtype=np.int64)], axis=1)


def users(sids: np.ndarray, n: int, history: int, seed: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user_index": np.arange(n), "target_item_index": rng.integers(0, len(sids), n),
                         "history": list(rng.integers(0, len(sids), (n, history)))})


class LevelMask:
    """Forward hook: logits outside the block of the level being emitted become -inf."""

    def __init__(self, model: Tiger):
        vocab = model.vocab
        next_level = torch.full((vocab.size,), vocab.n_levels, dtype=torch.long)  # after the last level: nothing
        next_level[BOS] = 0
        for level in range(vocab.n_levels):
            next_level[vocab.level_slice(level)] = level + 1
        allowed = torch.zeros(vocab.n_levels + 1, vocab.size, dtype=torch.bool)
        for level in range(vocab.n_levels):
            allowed[level, vocab.level_slice(level)] = True
        self.next_level, self.allowed = next_level.to(model.device), allowed.to(model.device)

    def __call__(self, module, args, kwargs, output):
        last = kwargs["decoder_input_ids"][:, -1]  # (R,) token just fed
        mask = self.allowed[self.next_level[last]]  # (R, V)
        output.logits = output.logits.masked_fill(~mask[:, None, :], float("-inf"))
        return output


def prefix_function(sids: np.ndarray, model: Tiger):
    """HF's constraint: decoder tokens so far -> allowed next tokens, from a dict trie of token prefixes."""
    tokens = model.vocab.code_tokens(torch.as_tensor(sids)).tolist()
    allowed: dict[tuple[int, ...], set[int]] = {}
    for row in tokens:
        prefix = (BOS,)
        for token in row:
            allowed.setdefault(prefix, set()).add(token)
            prefix = (*prefix, token)
    allowed = {prefix: sorted(nxt) for prefix, nxt in allowed.items()}
    return lambda batch_id, input_ids: allowed.get(tuple(input_ids.tolist()), [])


def hf_search(model: Tiger, batch, prefix_fn, item_of: dict, beams: int, top_k: int):
    levels = model.vocab.n_levels
    out = model.t5.generate(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], num_beams=beams,
        num_return_sequences=top_k, max_new_tokens=levels, min_new_tokens=levels, length_penalty=0.0,
        early_stopping=True, do_sample=False, prefix_allowed_tokens_fn=prefix_fn, output_scores=True,
        return_dict_in_generate=True, decoder_start_token_id=BOS, eos_token_id=None, pad_token_id=0,
    )
    sequences = out.sequences[:, 1 : levels + 1].reshape(-1, top_k, levels)  # (B, top_k, L) tokens
    items = torch.tensor([[item_of.get(tuple(seq), -1) for seq in user] for user in sequences.tolist()])
    return items, out.sequences_scores.reshape(-1, top_k)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beams", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps torch's default")
    parser.add_argument("--checkpoint", help="a TIGER best.pt; default: paper-profile TIGER with seeded weights")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sids = catalog(12_000, args.seed)
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint, map_location=args.device)
    else:
        torch.manual_seed(args.seed)
        model = Tiger(tiger_config("paper", resolve_codebook_sizes(sids))).to(args.device).eval()
    data = SequenceDataset(users(sids, args.batch_size * args.batches, 20, args.seed), sids, model.vocab, 20)
    batches = [collate([data[i] for i in range(b * args.batch_size, (b + 1) * args.batch_size)])
               for b in range(args.batches)]
    batches = [{k: v.to(args.device) for k, v in batch.items()} for batch in batches]
    trie = Trie.from_sids(torch.as_tensor(sids), model.vocab.codebook_sizes).to(args.device)
    prefix_fn = prefix_function(sids, model)
    item_of = {tuple(row): i for i, row in enumerate(model.vocab.code_tokens(torch.as_tensor(sids)).tolist())}
    model.t5.register_forward_hook(LevelMask(model), with_kwargs=True)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {len(sids)} items, "
          f"{model.vocab.n_levels} levels, batch {args.batch_size} x {args.batches}, top-{args.top_k}")
    print(f"{'beams':>5} {'genrec users/s':>15} {'HF users/s':>11} {'speed-up':>9} {'identical top-K':>16} "
          f"{'max |score diff|':>17}")
    for beams in args.beams:
        ours_seconds = hf_seconds = 0.0
        same, diff = True, 0.0
        model.recommend(batches[0], trie, beams, args.top_k)  # warm-up
        for batch in batches:
            (items, scores), seconds = timed(lambda b=batch, w=beams: model.recommend(b, trie, w, args.top_k))
            ours_seconds += seconds
            with torch.no_grad():
                (hf_items, hf_scores), seconds = timed(
                    lambda b=batch, w=beams: hf_search(model, b, prefix_fn, item_of, w, args.top_k))
            hf_seconds += seconds
            same &= torch.equal(items.cpu(), hf_items.cpu())
            diff = max(diff, float((scores.cpu() - hf_scores.cpu()).abs().max()))
        n = args.batch_size * args.batches
        print(f"{beams:>5} {n / ours_seconds:>15.1f} {n / hf_seconds:>11.1f} {hf_seconds / ours_seconds:>8.1f}x "
              f"{str(same):>16} {diff:>17.2e}")


if __name__ == "__main__":
    main()
