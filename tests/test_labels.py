"""Label sets: parsing and rejection, CLIP-style prompt averaging, scores, hysteresis, fusion."""

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from streambind.errors import ConfigError
from streambind.labels import (
    LABEL_MODALITIES,
    LOGIT_SCALE,
    PROMPT_TEMPLATES,
    Label,
    LabelSet,
    fuse,
    hysteresis,
    label_text_matrix,
    prompt_texts,
    zero_shot_scores,
)

ROOT = Path(__file__).resolve().parents[1]
DOC = {
    "name": "home",
    "version": 1,
    "labels": [
        {"name": "glass breaking", "prompts": ["glass breaking"], "threshold": 0.2},
        {"name": "dog", "prompts": ["a dog barking", "a dog"], "modalities": ["audio", "vision"]},
    ],
}


def hashed_text_embedding(texts: list[str], dim: int = 16) -> torch.Tensor:
    """A stand-in text tower: a fixed pseudo-random vector per distinct string."""
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        rows.append(torch.randn(dim, generator=torch.Generator().manual_seed(seed)))
    return torch.stack(rows)


def test_parse_defaults_and_round_trip():
    label_set = LabelSet.from_dict(DOC)
    assert label_set.labels[0].modalities == ("vision", "audio", "depth", "thermal", "imu", "fused")
    assert label_set.labels[1].threshold == 0.0
    assert LabelSet.from_json(json.dumps(label_set.to_dict())) == label_set
    assert [label.name for label in label_set.labels_for("imu")] == ["glass breaking"]


def test_from_file_reads_yaml(tmp_path):
    path = tmp_path / "labels.yaml"
    path.write_text("name: yard\nversion: 2\nlabels:\n  - name: rain\n    threshold: 0.1\n")
    label_set = LabelSet.from_file(path)
    assert (label_set.name, label_set.version) == ("yard", 2)
    assert label_set.labels[0].prompts == ("rain",)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": ""}, "name: '' should be non-empty"),
        ({"version": -1}, "version: -1 is less than the minimum"),
        ({"version": True}, "version: True is not of type 'integer'"),
        ({"version": "2"}, "version: '2' is not of type 'integer'"),
        ({"labels": []}, "labels: [] should be non-empty"),
        ({"labels": [{"name": "a"}, {"name": "a"}]}, "duplicate"),
        ({"labels": [{"name": "a", "threshold": 2}]}, "labels/0/threshold: 2 is greater"),
        ({"labels": [{"name": "a", "threshold": "high"}]}, "labels/0/threshold"),
        ({"scoring": "sigmoid"}, "scoring: 'sigmoid' is not one of"),
        # Any well-formed sensor name is allowed (a bound sensor); a malformed one is not.
        ({"labels": [{"name": "a", "modalities": ["Smell!"]}]}, "labels/0/modalities/0: 'Smell!'"),
        ({"labels": [{"name": "a", "modalities": [["audio"]]}]}, "labels/0/modalities/0"),
        ({"labels": [{"name": "a", "modalities": "audio"}]}, "labels/0/modalities"),
        ({"labels": [{"name": "a", "prompts": [""]}]}, "labels/0/prompts/0"),
        ({"labels": [{"name": "a", "prompts": ["  "]}]}, "labels/0/prompts/0"),
        ({"labels": [{"name": "a", "prompts": [1]}]}, "labels/0/prompts/0"),
        ({"labels": [{"name": "a", "prompts": ["x"] * 65}]}, "labels/0/prompts"),
        ({"labels": [{"name": "a", "treshold": 0.3}]}, "'treshold' was unexpected"),
        ({"labels": [{"name": 7}]}, "labels/0/name"),
        ({"labels": ["a"]}, "labels/0"),
        ({"labels": [{"name": f"l{i}"} for i in range(1025)]}, "labels"),
        ({"top_k": 0}, "top_k"),
        ({"hysteresis": 1}, "hysteresis"),
    ],
)
def test_rejections_name_the_problem(change, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        LabelSet.from_dict({**DOC, **change})


@pytest.mark.parametrize("doc", [None, [1], "home", 3])
def test_a_document_that_is_not_an_object_is_a_config_error(doc):
    with pytest.raises(ConfigError, match="not of type 'object'"):
        LabelSet.from_dict(doc)


def test_the_schema_file_accepts_the_shipped_label_sets():
    import yaml

    from streambind.demo import demo_label_set

    values = yaml.safe_load((ROOT / "helm" / "streambind" / "values.yaml").read_text())
    for doc in (DOC, demo_label_set(), values["labels"]["labelSet"]):
        assert LabelSet.from_dict(doc).name == doc["name"]
    schema = json.loads((ROOT / "schemas" / "label_set.schema.json").read_text())
    pattern = schema["$defs"]["label"]["properties"]["modalities"]["items"]["pattern"]
    assert all(re.fullmatch(pattern, m) for m in LABEL_MODALITIES)


def test_bad_json_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid JSON"):
        LabelSet.from_json(b"{not json")


def test_prompts_are_wrapped_in_every_template():
    label = Label("dog", ("a dog", "puppy"))
    texts = prompt_texts(label, "audio")
    assert len(texts) == 2 * len(PROMPT_TEMPLATES["audio"])
    assert "the sound of a dog." in texts and "the sound of puppy." in texts


def test_label_matrix_is_the_normalized_mean_of_normalized_prompts():
    label_set = LabelSet.from_dict(DOC)
    calls = []

    def embed(texts):
        calls.append(texts)
        return hashed_text_embedding(texts)

    matrix = label_text_matrix(label_set, "audio", embed)
    assert len(calls) == 1  # one batched call for every prompt of every label
    dog_texts = prompt_texts(label_set.labels[1], "audio")
    expected = torch.nn.functional.normalize(hashed_text_embedding(dog_texts), dim=-1).mean(0)
    torch.testing.assert_close(matrix[1], expected / expected.norm())
    torch.testing.assert_close(matrix.norm(dim=-1), torch.ones(2))


def test_scores_are_a_softmax_over_scaled_cosines():
    labels = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    windows = 7.0 * labels[[2, 0]]  # unnormalized on purpose
    scores = zero_shot_scores(windows, labels)
    torch.testing.assert_close(scores.sum(-1), torch.ones(2))
    assert scores.argmax(-1).tolist() == [2, 0]
    cosine = torch.nn.functional.normalize(windows, dim=-1) @ labels.T
    torch.testing.assert_close(scores, torch.softmax(LOGIT_SCALE * cosine, -1))
    torch.testing.assert_close(zero_shot_scores(windows, labels, "cosine"), cosine)


def test_hysteresis_holds_a_label_until_score_drops_below_margin():
    label = Label("dog", ("dog",), threshold=0.5)
    sequence = [0.45, 0.55, 0.45, 0.41, 0.39, 0.45, 0.5]
    on, was_on = [], frozenset()
    for score in sequence:
        result = hysteresis([(label, score)], was_on, margin=0.1)
        was_on = frozenset(name for name, _ in result)
        on.append(bool(result))
    assert on == [False, True, True, True, False, False, True]
    # The state is the caller's: a stream that starts fresh starts off.
    assert hysteresis([(label, 0.45)], frozenset(), margin=0.1) == []


def test_fuse_is_normalized_sum_of_normalized():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 0.5])
    torch.testing.assert_close(fuse([a, b]), torch.tensor([1.0, 1.0]) / 2**0.5)
