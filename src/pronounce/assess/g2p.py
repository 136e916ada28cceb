"""Canonical phones for a word CMUdict lacks, predicted by g2p-en's neural model.

g2p-en (pinned) ships its trained grapheme-to-phoneme model in the wheel (`checkpoint20.npz`,
3.3 MB: a GRU encoder-decoder). Importing the package is not offline-safe: `g2p_en/g2p.py`
checks at import for NLTK's `averaged_perceptron_tagger` and `cmudict` corpora and calls
`nltk.download` for each one that is missing, and `G2p()` then loads NLTK's cmudict, which
fails without that download. Out-of-vocabulary words never need either: g2p-en's own `G2p.__call__`
sends them straight to `G2p.predict(word)` (the POS tagger only picks between homographs,
which are all in CMUdict). So this module finds the package without importing it, loads the
shipped weights and runs `predict`'s computation here, operation for operation (tested equal
to g2p-en's `predict` on words outside CMUdict): no NLTK, no download, no network.
"""

from __future__ import annotations

import functools
import re
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from ..scoring.metrics import normalise_phones

# g2p_en.g2p.G2p's vocabularies, in its order (the model's embedding rows and output classes).
GRAPHEMES = ("<pad>", "<unk>", "</s>", *"abcdefghijklmnopqrstuvwxyz")
PHONEMES = ("<pad>", "<unk>", "<s>", "</s>", *(
    "AA0 AA1 AA2 AE0 AE1 AE2 AH0 AH1 AH2 AO0 AO1 AO2 AW0 AW1 AW2 AY0 AY1 AY2 B CH D DH EH0 EH1 EH2 "
    "ER0 ER1 ER2 EY0 EY1 EY2 F G HH IH0 IH1 IH2 IY0 IY1 IY2 JH K L M N NG OW0 OW1 OW2 OY0 OY1 OY2 P R "
    "S SH T TH UH0 UH1 UH2 UW UW0 UW1 UW2 V W Y Z ZH").split())
START, END = 2, 3  # <s>, </s> in PHONEMES
MAX_PHONES = 20  # g2p-en's decoder stops after 20 phones
WEIGHTS = "checkpoint20.npz"


class G2PUnavailable(RuntimeError):
    """g2p-en is not installed: out-of-vocabulary words stay without canonical phones."""


@functools.cache
def _weights() -> dict[str, np.ndarray]:
    spec = find_spec("g2p_en")  # locates the package without running its __init__ (NLTK, downloads)
    if spec is None or not spec.submodule_search_locations:
        raise G2PUnavailable("g2p-en is not installed (pip install -e .)")
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _cell(x, h, w_ih, w_hh, b_ih, b_hh):
    """One GRU step as g2p-en computes it (PyTorch's gate order r, z, n)."""
    ih, hh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    k = ih.shape[-1] * 2 // 3
    r, z = np.split(_sigmoid(ih[:, :k] + hh[:, :k]), 2, -1)
    n = np.tanh(ih[:, k:] + r * hh[:, k:])
    return (1 - z) * n + z * h


def spellable(word: str) -> str:
    """The characters g2p-en reads of a word: lower case letters and apostrophes (its cleaning)."""
    return re.sub(r"[^a-z']", "", word.lower())


@functools.lru_cache(maxsize=1024)
def predict(word: str) -> tuple[str, ...]:
    """The predicted pronunciation of `word`, stress stripped; () for a word with no letter
    (a number, say: g2p-en spells those out first, which this does not)."""
    chars = spellable(word)
    if not re.search("[a-z]", chars):
        return ()
    w = _weights()
    index = {g: i for i, g in enumerate(GRAPHEMES)}
    x = np.take(w["enc_emb"], [[index.get(c, 1) for c in [*chars, "</s>"]]], axis=0)
    h = np.zeros((1, w["enc_w_hh"].shape[-1]), np.float32)
    for t in range(x.shape[1]):
        h = _cell(x[:, t, :], h, w["enc_w_ih"], w["enc_w_hh"], w["enc_b_ih"], w["enc_b_hh"])
    dec, out = np.take(w["dec_emb"], [START], axis=0), []
    for _ in range(MAX_PHONES):
        h = _cell(dec, h, w["dec_w_ih"], w["dec_w_hh"], w["dec_b_ih"], w["dec_b_hh"])
        pred = int((h @ w["fc_w"].T + w["fc_b"]).argmax())
        if pred == END:
            break
        out.append(PHONEMES[pred])
        dec = np.take(w["dec_emb"], [pred], axis=0)
    return tuple(p for p in normalise_phones(out) if p not in ("<pad>", "<unk>", "<s>"))
