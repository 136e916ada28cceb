"""The streaming scores.json index: the same entries as json.load, whatever the chunk size."""

import json

import pytest
from conftest import BUNDLED

from pronounce.core.errors import CorpusError
from pronounce.data.jsonindex import index_scores, load_score

TRICKY = {
    "0001": {"text": "WE CALL IT BEAR", "accuracy": 8, "words": [{"text": "Ç'est", "phones": "K AO0 L"}]},
    "0002": {"text": "a \"quoted\" } { ] [ , : brace", "n": 12345678901234, "f": -1.5e-3, "x": None},
    "0003": [1, 2, {"deep": {"er": [True, False]}}],
    "ünï": 7,
    "0005": 1234567,
}


def _entries(path, chunk):
    spans = index_scores(path, chunk=chunk)
    with open(path, "rb") as f:
        return {k: load_score(f, span) for k, span in spans.items()}


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_index_gives_what_json_load_gives(tmp_path, chunk, indent):
    path = tmp_path / "scores.json"
    path.write_text(json.dumps(TRICKY, indent=indent, ensure_ascii=False), encoding="utf-8")
    assert _entries(path, chunk) == json.loads(path.read_text(encoding="utf-8"))


def test_bundled_scores_index_matches_json_load():
    path = BUNDLED / "resource/scores.json"
    assert _entries(path, 4096) == json.loads(path.read_text(encoding="utf-8"))


def test_empty_object_and_duplicate_keys(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(" { } \n")
    assert index_scores(path) == {}
    path.write_text('{"a": 1, "a": {"b": 2}}')
    assert _entries(path, 3) == {"a": {"b": 2}}  # the later one wins, as with json.load


@pytest.mark.parametrize("text,message", [
    ("{not json", "not valid JSON"),
    ('{"a": 1', "not valid JSON: expected ',' or '}'"),
    ('{"a": 1}}', "extra data"),
    ('{"a" 1}', "expected ':'"),
    ('{"a": tru}', "not valid JSON"),
    ("[1, 2]", "expected an object keyed by utterance id"),
    ("", "expected an object keyed by utterance id"),
])
def test_malformed_files_fail_with_the_byte_offset(tmp_path, text, message):
    path = tmp_path / "s.json"
    path.write_text(text)
    with pytest.raises(CorpusError, match=message):
        index_scores(path, chunk=2)
