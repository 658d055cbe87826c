"""CLIP tokenization equal to the reference SimpleTokenizer."""

import html
import re

import pytest
import torch

from streambind.model import tokenize
from streambind.model.tokenizer import END_OF_TEXT, START_OF_TEXT, clean_text


def test_known_ids():
    ids = tokenize(["a dog barking", "glass breaking in a quiet kitchen"])
    assert ids.dtype == torch.long and ids.shape == (2, 77)
    assert ids[0, :6].tolist() == [49406, 320, 1929, 32676, 49407, 0]
    assert ids[1, :9].tolist() == [49406, 3313, 2755, 530, 320, 7557, 4485, 49407, 0]
    assert ids[:, 9:].eq(0).all()


def test_single_string_and_empty_batch():
    assert tokenize("a dog barking").shape == (1, 77)
    assert tokenize([]).shape == (0, 77)


def test_truncation_keeps_end_of_text_last():
    ids = tokenize(["word " * 200, "x"])
    assert ids[0, 0] == START_OF_TEXT and ids[0, -1] == END_OF_TEXT
    assert (ids[0, 1:-1] != 0).all() and (ids[0, 1:-1] != END_OF_TEXT).all()
    assert ids[1, :3].tolist() == [START_OF_TEXT, 343, END_OF_TEXT]  # "x</w>"
    short = tokenize(["word " * 200], context_length=8)
    assert short.shape == (1, 8) and short[0, -1] == END_OF_TEXT


def test_cleaning_like_the_reference():
    assert torch.equal(tokenize("  A Dog\n\tBARKING  "), tokenize("a dog barking"))
    assert torch.equal(tokenize("rock &amp;amp; roll"), tokenize("rock & roll"))
    assert torch.equal(tokenize("it’s “loud”"), tokenize("it's \"loud\""))
    assert not torch.equal(tokenize("a dog"), tokenize("a cat"))


NORMAL_TEXTS = [
    "A photo of a dog.",
    "  Glass   breaking\tin a QUIET kitchen\n",
    "it’s a “loud” ﬁre alarm",
    "Ｆｕｌｌ　width",
    "café — naïve coöperation",
    "rock &amp; roll &lt;3",
    "e\u0301 combining accent",
    "日本語のテキスト",
    "emoji 🐶 and numbers 12345",
]


@pytest.mark.parametrize("text", NORMAL_TEXTS)
def test_cleaning_equals_ftfy_pipeline(text):
    ftfy = pytest.importorskip("ftfy", reason="ftfy (optional) compares against the reference")

    def reference_clean(t):  # basic_clean + whitespace_clean + lower, as the reference
        t = html.unescape(html.unescape(ftfy.fix_text(t))).strip()
        return re.sub(r"\s+", " ", t).strip().lower()

    assert clean_text(text) == reference_clean(text)
