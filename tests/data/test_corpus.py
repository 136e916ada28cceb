"""The corpus reader (pronounce.data.corpus) on the bundled release layout and broken copies of it:
typed entries, the reject reason of every label problem, corpus-level errors.

Audio problems are decode's (tests/data/test_decode.py): the reader only checks a clip exists."""

import json

import pytest
from conftest import BUNDLED

from pronounce.core.errors import CorpusError
from pronounce.data.corpus import MISSING_KALDI_TEXT, Entry, Reject, detect_form, read_corpus

UTT = "000010011"  # train, speaker 0001: "WE CALL IT BEAR"


def items(corpus) -> tuple[int, list]:
    total, stream = read_corpus(str(corpus))
    return total, list(stream)


def only_reject(corpus) -> Reject:
    """The one Reject of a copy broken in one utterance; every other utterance still reads."""
    total, got = items(corpus)
    rejects = [x for x in got if isinstance(x, Reject)]
    assert total == len(got) == 107 and len(rejects) == 1, rejects
    return rejects[0]


def edit_scores(corpus, fn):
    path = corpus / "resource/scores.json"
    scores = json.loads(path.read_text())
    fn(scores[UTT])
    path.write_text(json.dumps(scores))


def drop_score(corpus):
    path = corpus / "resource/scores.json"
    scores = json.loads(path.read_text())
    del scores[UTT]
    path.write_text(json.dumps(scores))


def edit_table(corpus, name, fn):
    path = corpus / "train" / name
    path.write_text("".join(fn(line) for line in path.read_text().splitlines(keepends=True)))


def test_bundled_corpus_is_107_typed_entries_in_split_then_id_order():
    total, got = items(BUNDLED)
    assert total == 107 and all(isinstance(x, Entry) for x in got)
    assert [x.split for x in got] == ["train"] * 67 + ["test"] * 40
    for split in ("train", "test"):
        ids = [x.utt_id for x in got if x.split == split]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert not any(x.warnings for x in got)


def test_an_entry_holds_the_normalised_labels_and_its_clip_path():
    entry = next(x for x in items(BUNDLED)[1] if x.utt_id == UTT)
    assert entry.audio == str(BUNDLED / "WAVE/SPEAKER0001/000010011.WAV")
    # The release form's "phones" string is split; every score is a float; no mispronunciations -> [].
    word = {"stress": 10.0, "mispronunciations": []}
    assert entry.labels == {
        "speaker": "0001", "age": 6, "gender": "m", "text": "WE CALL IT BEAR",
        "accuracy": 8.0, "completeness": 10.0, "fluency": 9.0, "prosodic": 9.0, "total": 8.0,
        "words": [
            {"text": "WE", "phones": ["W", "IY0"], "phone_accuracies": [2.0, 2.0], "accuracy": 10.0, "total": 10.0, **word},
            {"text": "CALL", "phones": ["K", "AO0", "L"], "phone_accuracies": [2.0, 1.8, 1.8], "accuracy": 10.0,
             "total": 10.0, **word},
            {"text": "IT", "phones": ["IH0", "T"], "phone_accuracies": [2.0, 2.0], "accuracy": 10.0, "total": 10.0, **word},
            {"text": "BEAR", "phones": ["B", "EH0", "R"], "phone_accuracies": [2.0, 1.0, 1.0], "accuracy": 6.0,
             "total": 6.0, **word},
        ],
    }


def test_mispronunciations_are_renamed_to_one_shape():
    entry = next(x for x in items(BUNDLED)[1] if x.utt_id == "000010113")  # THEME's IY said as AH
    theme = entry.labels["words"][4]
    assert theme["text"] == "THEME" and theme["phones"] == ["TH", "IY0", "M"]
    assert theme["mispronunciations"] == [{"canonical_phone": "IY", "index": 1, "pronounced_phone": "AH"}]


# -- one broken utterance: a Reject with its reason and a detail naming the problem -------------

@pytest.mark.parametrize("breakage, reason, detail", [
    (lambda c: (c / "WAVE/SPEAKER0001/000010011.WAV").unlink(),
     "missing_audio_file", "wav.scp names WAVE/SPEAKER0001/000010011.WAV, not found"),
    (lambda c: drop_score(c),
     "missing_scores", "not in resource/scores.json"),
    (lambda c: edit_table(c, "utt2spk", lambda line: "" if line.startswith(UTT) else line),
     "malformed_labels", "no speaker/age/gender for speaker None"),
    (lambda c: edit_scores(c, lambda s: s.pop("fluency")),
     "malformed_labels", "KeyError: 'fluency'"),
    (lambda c: edit_scores(c, lambda s: s["words"][3].update({"phones-accuracy": [2, 1]})),
     "malformed_labels", "word 'BEAR': 3 phones, 2 accuracies"),
    (lambda c: edit_scores(c, lambda s: s["words"][0].update(
        mispronunciations=[{"canonical-phone": "W", "index": 7, "pronounced-phone": "V"}])),
     "mispronunciation_index_out_of_range", "word 'WE' has 2 phones, index 7"),
    (lambda c: edit_scores(c, lambda s: s["words"].pop()),
     "words_text_mismatch", "words 'WE CALL IT' != text 'WE CALL IT BEAR'"),
    (lambda c: edit_table(c, "text", lambda line: f"{UTT}\tWE CALL IT BEER\n" if line.startswith(UTT) else line),
     "words_text_mismatch", "train/text 'WE CALL IT BEER' != scores.json text 'WE CALL IT BEAR'"),
], ids=["missing_audio", "missing_scores", "no_speaker", "missing_score_key", "accuracies_count",
        "index_out_of_range", "words_vs_text", "kaldi_text_vs_scores"])
def test_a_broken_utterance_is_a_reject_with_its_reason(corpus_copy, breakage, reason, detail):
    breakage(corpus_copy)
    assert only_reject(corpus_copy) == Reject(UTT, "train", reason, detail)


def test_an_utterance_missing_from_the_kaldi_text_is_kept_with_a_warning(corpus_copy):
    edit_table(corpus_copy, "text", lambda line: "" if line.startswith(UTT) else line)
    total, got = items(corpus_copy)
    assert total == 107 and all(isinstance(x, Entry) for x in got)
    warned = [x for x in got if x.warnings]
    assert [(x.utt_id, x.warnings) for x in warned] == [(UTT, (MISSING_KALDI_TEXT,))]
    assert warned[0].labels["text"] == "WE CALL IT BEAR"  # from scores.json


# -- the corpus as a whole: CorpusError naming the path and the fix -------------------------

def test_forms_are_told_apart(tmp_path):
    assert detect_form(str(BUNDLED)) == "release" and detect_form("hf:mispeech/speechocean762") == "hf"
    (tmp_path / "dataset_dict.json").write_text("{}")
    assert detect_form(str(tmp_path)) == "hf"


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nowhere", r"^data\.corpus: '.*nowhere' does not exist$"),
    (lambda p: (p / "empty").mkdir() or p / "empty",
     r"^data\.corpus: '.*empty' is neither the speechocean762 release layout .* nor a Hugging Face DatasetDict"),
])
def test_unusable_corpus_path(tmp_path, make, message):
    with pytest.raises(CorpusError, match=message):
        read_corpus(str(make(tmp_path)))


def test_invalid_scores_json(corpus_copy):
    (corpus_copy / "resource/scores.json").write_text("{not json")
    with pytest.raises(CorpusError, match=r"scores\.json is not valid JSON: .* at byte \d+"):
        read_corpus(str(corpus_copy))


def test_missing_scores_json_is_named(corpus_copy):
    (corpus_copy / "resource/scores.json").unlink()
    with pytest.raises(CorpusError, match=r"resource/scores\.json is missing: the release layout keeps the labels there"):
        read_corpus(str(corpus_copy))


def test_a_missing_kaldi_table_is_named(corpus_copy):
    (corpus_copy / "test/spk2gender").unlink()
    with pytest.raises(CorpusError, match=r"test lacks spk2gender \(release layout\)$"):
        read_corpus(str(corpus_copy))
