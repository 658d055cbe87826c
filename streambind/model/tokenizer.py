"""CLIP BPE tokenization for the text tower, equal to the reference's ``SimpleTokenizer``.

The BPE itself comes from ``instant-clip-tokenizer`` (which ships the CLIP vocabulary). The
reference cleans text first: ``ftfy.fix_text``, HTML unescaping (twice), whitespace
collapsing, lowercasing. We reproduce that cleaning without depending on ftfy: NFC
normalization, straightening of curly quotes, latin ligatures and full-width ASCII, which is
what ftfy's defaults do to well-formed text. ftfy's mojibake repair (text that was decoded
with the wrong codec) is not reproduced.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import torch
from instant_clip_tokenizer import Tokenizer

CONTEXT_LENGTH = 77
START_OF_TEXT = 49406
END_OF_TEXT = 49407

_WHITESPACE = re.compile(r"\s+")
# ftfy's `uncurl_quotes`: single quotes U+02BC, U+2018..U+201B; double U+201C..U+201F.
# ftfy's `fix_latin_ligatures`: the ff/fi/fl/ffi/ffl/st ligatures, plus IJ and LJ/NJ/DZ.
# ftfy's `fix_character_width`: full-width ASCII and the ideographic space.
_TRANSLATION = {
    **{cp: "'" for cp in (0x02BC, 0x2018, 0x2019, 0x201A, 0x201B)},
    **{cp: '"' for cp in (0x201C, 0x201D, 0x201E, 0x201F)},
    **dict(zip(range(0xFB00, 0xFB07), ("ff", "fi", "fl", "ffi", "ffl", "st", "st"), strict=True)),
    0x0132: "IJ", 0x0133: "ij", 0x01C7: "LJ", 0x01C8: "Lj", 0x01C9: "lj",
    0x01CA: "NJ", 0x01CB: "Nj", 0x01CC: "nj", 0x01F1: "DZ", 0x01F2: "Dz", 0x01F3: "dz",
    **{cp: chr(cp - 0xFEE0) for cp in range(0xFF01, 0xFF5F)},
    0x3000: " ",
}


def clean_text(text: str) -> str:
    """The reference's text cleaning (see the module docstring), lowercased."""
    text = unicodedata.normalize("NFC", text).translate(_TRANSLATION)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


@functools.cache
def _tokenizer() -> Tokenizer:
    # Loading the vocabulary costs ~50 ms; one instance serves every call.
    return Tokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """Tokenize texts for the text tower: a LongTensor of shape (B, context_length).

    Each row is ``49406, <BPE tokens>, 49407`` padded with 0. A text too long to fit is
    truncated so that the end-of-text token 49407 is still the last position, as the
    reference does. Unlike the reference, a single string also gives a 2-D (1, 77) tensor.
    """
    if isinstance(texts, str):
        texts = [texts]
    if context_length < 2:
        raise ValueError("context_length must leave room for the start and end tokens")
    if len(texts) == 0:
        return torch.zeros(0, context_length, dtype=torch.long)
    cleaned = [clean_text(t) for t in texts]
    ids = _tokenizer().tokenize_batch(cleaned, context_length)  # (B, L) uint16
    return torch.from_numpy(ids.astype(np.int64))
