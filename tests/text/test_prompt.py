"""The decoder-only models' word vocabulary: the words chosen by hand, the tokenizer's earlier ids unchanged by
them, words read as one token, the template teacher's fixed words, and the catalog carrying them to every
decoder-only config (and through a bundle)."""

import numpy as np

from genrec_ml.experiments import Catalog
from genrec_ml.inputs import catalog_words, read_bundle, write_bundle
from genrec_ml.models.registry import model_config
from genrec_ml.text.cot import CotConfig, ItemFacts, template_cot, template_words
from genrec_ml.text.prompt import pieces, prompt_tokenizer, text_vocabulary
from genrec_ml.vocab import SidVocab
from tests.test_experiments import N_ITEMS, SIZES, splits_table


def test_the_vocabulary_takes_the_always_words_then_the_most_frequent_ties_by_word():
    titles = ["red lip gloss", "lip balm, 2 oz", "red nail polish", "gloss"]
    # lip 2, red 2, gloss 2 (ties by word: gloss, lip, red), then balm, nail, oz, polish with 1
    assert text_vocabulary(titles, 4, always=["Evidence", "of"]) == ("Evidence", "of", "gloss", "lip", "red", "balm")
    assert text_vocabulary(titles, 2, always=["lip"]) == ("lip", "gloss", "red")  # no word twice
    assert text_vocabulary([], 5) == ()


def test_words_become_single_tokens_after_every_earlier_id():
    vocab = SidVocab((4, 4, 2), n_user_buckets=0)
    plain = prompt_tokenizer(vocab)
    worded = prompt_tokenizer(vocab, ("mascara", "Evidence", "item"))  # "item" is a template word already
    assert worded.get_vocab_size() == plain.get_vocab_size() + 2
    assert all(worded.token_to_id(token) == i for token, i in plain.get_vocab().items())
    text = "Evidence: the mascara item."
    assert len(worded.encode(text).ids) == len(pieces(text)) < len(plain.encode(text).ids)
    assert worded.decode(worded.encode(text).ids).split() == pieces(text)


def test_template_words_cover_every_fixed_word_the_teacher_writes():
    words = set(template_words())
    facts = ItemFacts(titles=["x", "y", "z"], labels=[["attribute 3"], ["attribute 4"], []])
    config = CotConfig(long_history=3)
    for history, target in (([0, 1, 2], 1), ([2], 0), ([0], 0), ([1, 1, 1, 0], 2)):
        for sentence in template_cot(history, target, facts, config):
            assert {p for p in pieces(sentence) if p[0].isalpha()} - {"x", "y", "z"} <= words


def test_the_catalog_gives_every_decoder_only_model_its_words_and_a_bundle_keeps_them(tmp_path):
    words = catalog_words(["red lip gloss", "lip balm", None])
    assert words[:len(template_words())] == tuple(template_words()) and {"lip", "gloss"} <= set(words)
    splits, sids = splits_table(n_users=6)
    catalog = Catalog(n_items=N_ITEMS, sids=sids, codebook_sizes=SIZES, text_words=words)
    for name in ("minionerec", "lasar", "explicit_cot"):
        assert model_config(name, "smoke", catalog.config_fields()).text_words == words
    assert not hasattr(model_config("tiger", "smoke", catalog.config_fields()), "text_words")
    folder = write_bundle(tmp_path / "b", splits, catalog, dataset="toy", tokenizer="rq_kmeans_4x256")
    assert read_bundle(folder).catalog.text_words == words
    assert np.array_equal(read_bundle(folder).catalog.sids, sids)
