"""The MiniOneRec prompt (LASAR appendix E.2) and a word-level tokenizer that knows its words and the SID tokens.

    Below is an instruction that describes a task, paired with an input that provides further
    context. Write a response that appropriately completes the request.
    ### Instruction:
    Can you predict the next possible item that the user may expect?
    ### User Input:
    The user has interacted with items <a_12><b_3><c_200><d_7><e_0>, <a_9>... in chronological
    order. Can you predict the next possible item that the user may expect?
    ### Response:
    <a_..><b_..><c_..><d_..><e_..>

SID tokens are `<x_c>`, one letter per level (a, b, c, ... the disambiguation level last) and code c.
Their ids are `SidVocab`'s (pad 0, eos 1, then one block per level), so the history tokens the shared
`SequenceDataset` builds are already this tokenizer's ids; the template's words come after them.
A from-scratch backbone needs no pretrained tokenizer: this one is built from the template (HF
`tokenizers`, WordPiece), deterministically, so a checkpoint rebuilds it from its codebook sizes. The
template's words are whole tokens, and so are the dataset's `words` (`text_vocabulary`: the template
teacher's words and the most frequent words of the item titles, appended after everything else so
that the ids before them stay put); any other ASCII word is spelled with single-character pieces
(`s`, `##u`, `##n`: WordPiece's longest-match-first falls back to them), so every text the platform
feeds it is encodable; a word with a non-ASCII character becomes <unk>. A pretrained backbone brings
its own tokenizer instead.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

from tokenizers import Regex, Tokenizer
from tokenizers.models import WordPiece
from tokenizers.pre_tokenizers import Sequence as PreTokenizers
from tokenizers.pre_tokenizers import Split, WhitespaceSplit

from genrec_ml.vocab import N_SPECIAL, SidVocab

PREAMBLE = ("Below is an instruction that describes a task, paired with an input that provides further context. "
            "Write a response that appropriately completes the request.\n### Instruction:\n"
            "Can you predict the next possible item that the user may expect?\n### User Input:\n"
            "The user has interacted with items")
AFTER_HISTORY = (" in chronological order. Can you predict the next possible item that the user may expect?\n"
                 "### Response:\n")
SEPARATOR = ","  # between history items
# MiniOneRec's item-identification tasks (its SidItemFeatDataset: title -> SID, SID -> title), same preamble
ALIGN_PREAMBLE = ("Below is an instruction that describes a task, paired with an input that provides further "
                  "context. Write a response that appropriately completes the request.\n### Instruction:\n"
                  "Answer the question about item identification.\n### User Input:\n")
TITLE_TO_SID = ("Which item has the title:", "?\n### Response:\n")  # around the title; the answer is its SID
SID_TO_TITLE = ('What is the title of item "', '"?\n### Response:\n')  # around the SID; the answer is the title
UNK = "<unk>"
# LASAR's <s> and <e> around the latent steps (appendix E.1; Coconut's <bot>/<eot>): whole tokens, after the
# template's words, so MiniOneRec (Stage 1) and LASAR (Stage 2) share one vocabulary and Stage 2 loads Stage 1
LATENT_START, LATENT_END = "<bot>", "<eot>"
# after splitting at whitespace (newlines too: the template's structure is in its "###" headers):
# a SID token, a word, or one punctuation mark
_PIECES = r"<[a-z]+_\d+>|[A-Za-z']+|[^A-Za-z]"
_WORD_CHARACTERS = string.ascii_letters + "'"
# every printable ASCII character alone, and the word characters as continuations
_CHARACTERS = [*(c for c in string.printable if not c.isspace()), *(f"##{c}" for c in _WORD_CHARACTERS)]


def sid_token(level: int, code: int) -> str:
    return f"<{_level_letters(level)}_{code}>"


def _level_letters(level: int) -> str:
    letters, level = "", level + 1
    while level:
        level, digit = divmod(level - 1, 26)
        letters = string.ascii_lowercase[digit] + letters
    return letters


def prompt_tokenizer(vocab: SidVocab, words: Sequence[str] = ()) -> Tokenizer:
    """Ids 0 pad, 1 eos, SidVocab's SID blocks, then <unk>, the template's words (first use order), <bot>,
    <eot>, the character pieces, the item-identification prompts' words and `words` (each piece once, at
    its first place: what was added later comes after, so earlier ids stay put)."""
    tokens = {"<pad>": 0, "<eos>": 1}
    for level, size in enumerate(vocab.codebook_sizes):
        for code in range(size):
            tokens[sid_token(level, code)] = vocab.offsets[level] + code
    assert len(tokens) == N_SPECIAL + sum(vocab.codebook_sizes)
    alignment = pieces(ALIGN_PREAMBLE + " ".join(TITLE_TO_SID + SID_TO_TITLE))
    for piece in [UNK, *pieces(PREAMBLE + SEPARATOR + AFTER_HISTORY), LATENT_START, LATENT_END, *_CHARACTERS,
                  *alignment, *words]:
        tokens.setdefault(piece, len(tokens))
    tokenizer = Tokenizer(WordPiece(tokens, unk_token=UNK, continuing_subword_prefix="##"))
    tokenizer.pre_tokenizer = PreTokenizers([WhitespaceSplit(), Split(Regex(_PIECES), behavior="isolated")])
    tokenizer.add_special_tokens(["<pad>", "<eos>", LATENT_START, LATENT_END])
    return tokenizer


# the item titles' words made whole tokens: the explicit-CoT baseline scores every CoT token over the
# whole vocabulary, so its size is that loss's cost; on amazon-beauty the 2,048 most frequent of 7,993
# distinct title words cover 86 % of the 64k title word occurrences, the rest is spelled; with them (and
# the template teacher's words) a template CoT is 123 tokens instead of 377
MAX_TITLE_WORDS = 2048


def text_vocabulary(texts: Iterable[str], max_words: int, always: Sequence[str] = ()) -> tuple[str, ...]:
    """The words to make whole tokens: `always` (in order), then the `max_words` most frequent words of `texts`
    (ties by the word), case kept; punctuation and numbers are single characters anyway."""
    counts = Counter(piece for text in texts for piece in pieces(str(text)) if piece[0].isalpha())
    chosen = dict.fromkeys(w for w in always if w[:1].isalpha())
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(chosen) >= len(always) + max_words:
            break
        chosen.setdefault(word)
    return tuple(chosen)


def pieces(text: str) -> list[str]:
    """What the tokenizer splits `text` into (its tokens, as strings)."""
    return [piece for word in text.split() for piece in re.findall(_PIECES, word)]
