"""The template teacher, the semantic segmenter and the JSONL source of LASAR's chains of thought."""

import json

import numpy as np
import pandas as pd
import pytest

from genrec_ml.errors import GenrecConfigError, GenrecDataError
from genrec_ml.text.cot import (
    CotConfig,
    ItemFacts,
    build_cot_texts,
    join_segments,
    read_cot_jsonl,
    segment_boundaries,
    segment_texts,
    split_sentences,
    template_cot,
)

FACTS = ItemFacts(titles=["red lipstick", "lip liner", "face cream", "night serum"],
                  labels=[["makeup", "lips"], ["makeup", "lips"], ["skin"], ["skin", "night"]])


def test_template_sentences_by_hand():
    # history 0 (weight .64), 1 (.8), 2 (1): makeup 1.44, lips 1.44, skin 1; the target 3 carries skin
    sentences = template_cot([0, 1, 2], 3, FACTS, CotConfig(max_evidence=2, long_history=3))
    assert sentences == [
        "Evidence: 2 of the 3 items carry lips.",  # ties broken by name: lips before makeup
        "Evidence: 2 of the 3 items carry makeup.",
        "Preference: lips leads the recent choices, the latest being face cream.",
        "Intent: the next item likely carries skin, continuing skin.",
        "Recommendation: an item like night serum.",
        "Relevant history: 1 of the 3 items share a label with the target; the others are noise for this intent.",
    ]


def test_recency_decides_the_leading_label_and_the_intent_names_a_move():
    # decay .5: skin (item 2, oldest) .25, makeup = lips = .5 + 1; target 0 carries both, the last item too
    sentences = template_cot([2, 1, 0], 0, FACTS, CotConfig(recency_decay=0.5, max_evidence=1))
    assert sentences[0] == "Evidence: 2 of the 3 items carry lips."
    assert sentences[2] == "Intent: the next item likely carries lips, continuing makeup."
    sentences = template_cot([2, 3, 1], 3, FACTS, CotConfig(recency_decay=0.5))  # skin .25 + .5, night .5
    assert "Intent: the next item likely carries skin, moving on from makeup." in sentences
    # a target whose labels the history never had: its first label, moving on from the last item's
    leave = template_cot([0], 2, FACTS, CotConfig())
    assert "Intent: the next item likely carries skin, moving on from makeup." in leave
    assert not any(s.startswith("Relevant history") for s in leave)  # a short history has no denoising stage


def test_more_diverse_histories_get_more_evidence_sentences():
    narrow = template_cot([0, 1], 3, FACTS, CotConfig())
    wide = template_cot([0, 2, 3], 1, FACTS, CotConfig())
    assert sum(s.startswith("Evidence") for s in narrow) == 2 < sum(s.startswith("Evidence") for s in wide) == 4


def test_boundaries_cut_wide_gaps_and_keep_the_widest_up_to_the_segment_cap():
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0], [-1.0, 0.0]])
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    distance = 1 - (unit[:-1] * unit[1:]).sum(1)  # ~[.006, .89, .005, 1.1]
    assert distance[1] > 0.5 and distance[3] > 0.5 and distance[0] < 0.5 and distance[2] < 0.5
    assert segment_boundaries(v, CotConfig(breakpoint_distance=0.5)) == [1, 3]
    assert segment_boundaries(v, CotConfig(breakpoint_distance=0.5, max_segments=2)) == [3]  # the widest gap
    assert segment_boundaries(v[:1], CotConfig()) == []
    assert join_segments(["a.", "b.", "c.", "d.", "e."], [1, 3]) == ["a. b.", "c. d.", "e."]


def test_each_distinct_sentence_is_embedded_once():
    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.array([[1.0, 0.0] if t.startswith("x") else [0.0, 1.0] for t in texts])

    segments = segment_texts([["x1.", "x2.", "y1."], ["x1.", "y1."]], encode, CotConfig())
    assert calls == [["x1.", "x2.", "y1."]]
    assert segments == [["x1. x2.", "y1."], ["x1.", "y1."]]


def test_split_sentences():
    assert split_sentences("Step 1: a b. Step 2: c!\nRecommendation: <a_1><b_2>") == [
        "Step 1: a b.", "Step 2: c!", "Recommendation: <a_1><b_2>"]


EXAMPLES = pd.DataFrame({"user_index": [0, 0, 1], "target_position": [1, 2, 1],
                         "target_item_index": [1, 2, 3], "history": [[0], [0, 1], [2]]})


def test_jsonl_rows_by_user_index_or_user_id(tmp_path):
    path = tmp_path / "cot.jsonl"
    rows = [{"user_index": 0, "target_position": 1, "cot": "A."},
            {"user_id": "u0", "target_position": 2, "cot": "B."},
            {"user_id": "u1", "target_position": 1, "cot": "C. D."},
            {"user_index": 5, "target_position": 9, "cot": "x"}]  # not a training example: ignored
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_cot_jsonl(path, EXAMPLES, user_ids=["u0", "u1"]) == ["A.", "B.", "C. D."]


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 2: not JSON"),
    ('{"user_index": 0, "target_position": 2}', "line 2: needs a non-empty string `cot`"),
    ('{"user_id": "nobody", "target_position": 2, "cot": "x"}', "line 2: needs `user_index` or a known `user_id`"),
    ('{"user_index": "0", "target_position": 2, "cot": "x"}', "line 2: `user_index` and `target_position` must be"),
])
def test_jsonl_errors_name_the_file_and_line(tmp_path, line, message):
    path = tmp_path / "cot.jsonl"
    path.write_text(json.dumps({"user_index": 0, "target_position": 1, "cot": "A."}) + "\n" + line + "\n")
    with pytest.raises(GenrecDataError, match=f"{path}, {message}"):
        read_cot_jsonl(path, EXAMPLES, user_ids=["u0", "u1"])


def test_jsonl_without_a_row_for_some_example_fails(tmp_path):
    path = tmp_path / "cot.jsonl"
    path.write_text(json.dumps({"user_index": 0, "target_position": 1, "cot": "A."}) + "\n")
    missing = "2 of 3 training examples have no CoT, e.g. user_index 0, target_position 2"
    with pytest.raises(GenrecDataError, match=missing):
        read_cot_jsonl(path, EXAMPLES)
    with pytest.raises(GenrecDataError, match="no such CoT file"):
        read_cot_jsonl(tmp_path / "absent.jsonl", EXAMPLES)


def test_config_is_validated():
    with pytest.raises(GenrecConfigError, match="teacher"):
        CotConfig(teacher="gpt")
    with pytest.raises(GenrecConfigError, match="path"):
        CotConfig(teacher="jsonl")
    with pytest.raises(GenrecConfigError, match="max_segments"):
        CotConfig(max_segments=0)


def test_build_cot_texts_one_row_per_example_with_its_segment_count():
    def encode(texts):  # every stage its own direction: one segment per stage, evidence sentences together
        stages = ["Evidence", "Preference", "Intent", "Recommendation", "Relevant"]
        return np.eye(len(stages))[[stages.index(t.split(":")[0].split()[0]) for t in texts]]

    cot = build_cot_texts(EXAMPLES, FACTS, CotConfig(long_history=2), encode)
    assert cot[["user_index", "target_position", "history_length"]].values.tolist() == [[0, 1, 1], [0, 2, 2], [1, 1, 1]]
    assert cot["label_diversity"].tolist() == [2, 2, 1]
    assert cot["n_segments"].tolist() == [4, 5, 4]  # the 2-item history also gets the denoising stage
    assert [len(s) for s in cot["segments"]] == cot["n_segments"].tolist()
    assert cot["segments"][0][0] == "Evidence: 1 of the 1 items carry lips. Evidence: 1 of the 1 items carry makeup."


def test_item_facts_name_numeric_categories_and_need_every_index():
    items = pd.DataFrame({"item_index": [1, 0], "title": ["b", ""], "categories": [["7", "Lips"], None]})
    facts = ItemFacts.from_items(items)
    assert facts.titles == ["item 0", "b"] and facts.labels == [[], ["attribute 7", "Lips"]]
    with pytest.raises(GenrecDataError, match="item_index"):
        ItemFacts.from_items(items.iloc[:1])


def test_the_offline_sentence_model_cuts_between_topics():
    from genrec_ml.config import EmbeddingConfig
    from genrec_ml.text.embed import sentence_encoder

    sentences = ["The cat sat on the mat.", "Cats love to sleep on soft mats.", "Stock markets fell sharply today.",
                 "Investors sold their shares in a panic.", "The cat woke up and ate its food."]
    encode = sentence_encoder(EmbeddingConfig())
    # measured distances ~ .38 / .95 / .53 / .90: two cuts at this threshold
    assert segment_texts([sentences], encode, CotConfig(breakpoint_distance=0.7)) == [[
        "The cat sat on the mat. Cats love to sleep on soft mats.",
        "Stock markets fell sharply today. Investors sold their shares in a panic.",
        "The cat woke up and ate its food."]]
