"""What `pronounce assess` says beside the model's answers: the model's banner, each score's band
from the paper's rubric, heard-vs-expected words, ARPAbet example words, and g2p-en's offline
prediction for words CMUdict lacks. No model: fast, but for the comparison with g2p-en itself."""

import json
import subprocess
import sys
import types

import pytest
from conftest import ROOT

from pronounce.assess.explain import PHONE_EXAMPLES, band, explain, legend, model_card, phone_hint, scales, word_check
from pronounce.assess.g2p import predict
from pronounce.assess.words import _cmudict, expected_words
from pronounce.scoring.metrics import normalise_phones
from pronounce.data.phones import ARPABET
from pronounce.task.prompts import APA_FIELDS, APA_PROMPT

# --------------------------------------------------------------------------- rubric


def test_every_score_of_every_aspect_has_exactly_one_band_from_the_prompt():
    assert tuple(scales()) == APA_FIELDS
    for aspect, s in scales().items():
        assert (s["low"], s["high"]) == (0, 10)
        for score in range(11):
            hits = [b for b in s["bands"] if b[0] <= score <= b[1]]
            assert len(hits) == 1, (aspect, score, hits)
        for low, high, text in s["bands"]:
            assert f"* {low}-{high}: {text}" in APA_PROMPT  # quoted, not paraphrased
    assert band("fluency", 9) == "9/10, band 8-10: Fluent without noticeable pauses or stammering"
    assert band("accuracy", 8.5).startswith("8.5/10, band 7-8: ")  # between two bands: the one below
    assert band("total", 11) == "11, outside the 0-10 scale: no band"


# --------------------------------------------------------------------------- phones


def test_each_phone_example_word_holds_its_phone_in_cmudict():
    assert set(PHONE_EXAMPLES) == set(ARPABET)
    for phone, word in PHONE_EXAMPLES.items():
        assert phone in normalise_phones(_cmudict()[word][0]), (phone, word)
    assert phone_hint("DH") == "DH as in this"
    assert phone_hint("AX") == "AX (not one of CMUdict's 39 phones)"  # the prompt's own example uses AX
    assert legend(["T", "DH", "AA", "DH"]) == "AA as in hot, DH as in this, T as in top"


def test_errors_in_words():
    w = {"substituted": [["AO", "AA"]], "deleted": ["R", "T"], "inserted": ["AX"]}
    assert explain(w) == "said AA (as in hot) for AO (as in law); left out R (as in red), T (as in top); added AX"


# --------------------------------------------------------------------------- heard vs expected


def test_heard_words_against_expected_words():
    same = word_check("We call it bear.", "we call it bear")
    assert same["matched"] == 4 and same["note"] == "the model heard the expected sentence (4 of 4 words)"
    # The case: the tiny model heard 'BYE' for "two six four eight".
    other = word_check("two six four eight", "BYE")
    assert other["matched"] == 0 and other["note"].startswith("the model heard other words (0 of 4 expected words)")
    assert [p["heard"] for p in other["pairs"] if p["expected"]].count(None) == 3
    some = word_check("we call it bear", "we fall it bear there")
    assert some["matched"] == 3 and some["note"] == ("the model heard other words: 3 of 4 expected words as "
                                                     "written, 2 other word(s)")
    assert {"expected": None, "heard": "THERE"} in some["pairs"]


# --------------------------------------------------------------------------- which model answered


def write_record(folder, **record):
    (folder / "adapter").mkdir(parents=True)
    if record:
        (folder / "training.json").write_text(json.dumps(record))
    return folder


def test_the_banner_names_a_tiny_smoke_adapter_and_a_real_one(tmp_path):
    tiny = write_record(tmp_path / "tiny", config="pretrained_r320", profile="smoke", epochs=20, base="builtin:tiny")
    card = model_card(tiny / "adapter", tiny, None, str(tmp_path / "base"))
    assert card["tiny"] and card["banner"].startswith("TINY SMOKE MODEL, NOT A REAL ASSESSMENT: pretrained_r320, "
                                                      "final adapter (epoch 20 of 20), recipe smoke")
    # adapters trained before training.json existed: base.json beside them still tells
    old = write_record(tmp_path / "old")
    card = model_card(old / "adapter", old, {"base": "builtin:tiny", "source": "."}, str(tmp_path / "base"))
    assert card["tiny"] and "recipe not recorded" in card["banner"] and card["banner"].startswith("TINY SMOKE")

    real = write_record(tmp_path / "paper_r64", config="paper_r64", profile="paper", epochs=4,
                        base="microsoft/Phi-4-multimodal-instruct", revision="0af439b3adb8c23fda473c4f86001dbf9a226021")
    (real / "epoch-3").mkdir()
    card = model_card(real / "epoch-3", real, None, "microsoft/Phi-4-multimodal-instruct")
    assert not card["tiny"] and card["epoch"] == 3
    assert card["banner"] == ("Model: paper_r64, epoch-3 (epoch 3 of 4), recipe paper, on base "
                              "microsoft/Phi-4-multimodal-instruct @ 0af439b3adb8.")
    smoke = write_record(tmp_path / "smoke", config="x", profile="smoke", epochs=2, base="my/model")
    assert model_card(smoke / "adapter", smoke, None, "my/model")["banner"].startswith("SMOKE RECIPE, NOT THE PAPER'S")


# --------------------------------------------------------------------------- g2p-en, offline


def test_words_cmudict_lacks_get_g2p_ens_prediction_marked():
    e = expected_words("We call it Zorblax, 42")
    assert e.words == ("WE", "CALL", "IT", "ZORBLAX", "42")
    assert e.variants[3] == (("Z", "AO", "R", "B", "AH", "L", "K", "S"),) and e.predicted == (False,) * 3 + (True, False)
    assert e.missing == ["42"] and e.predicted_words == ["ZORBLAX"]  # no letters: nothing to spell
    assert expected_words("Zorblax", g2p=False).missing == ["ZORBLAX"]


@pytest.mark.slow  # importing NLTK takes ~15 s on 2 shared cores; CI runs it
def test_prediction_equals_g2p_ens_own_predict(monkeypatch):
    """g2p-en's G2p.predict, imported with its NLTK download checks stubbed (the import would
    otherwise try the network) and NLTK's cmudict replaced (G2p() loads it; predict never reads it)."""
    import random
    import string

    import nltk.data

    monkeypatch.setattr(nltk.data, "find", lambda resource, *a, **k: resource)
    monkeypatch.setattr(nltk, "download", lambda *a, **k: pytest.fail("g2p-en tried to download"))
    import g2p_en.g2p

    monkeypatch.setattr(g2p_en.g2p, "cmudict", types.SimpleNamespace(dict=dict))
    reference = g2p_en.g2p.G2p()
    rng = random.Random(0)
    words = ["zorblax", "activationist", "o'neill", "a", "supercalifragilisticexpialidocious"] + [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, 14))) for _ in range(200)]
    assert [predict(w) for w in words] == [tuple(normalise_phones(reference.predict(w))) for w in words]


def test_prediction_is_offline_and_imports_neither_nltk_nor_g2p_en():
    code = """
import socket, sys
def refuse(*a, **k):
    raise AssertionError("network")
socket.socket.connect = refuse
socket.getaddrinfo = refuse
from pronounce.assess.words import expected_words
e = expected_words("Zorblax")
print(e.variants[0][0], sorted(m for m in sys.modules if m.split(".")[0] in ("nltk", "g2p_en")))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "('Z', 'AO', 'R', 'B', 'AH', 'L', 'K', 'S') []"
    assert proc.stderr == ""
