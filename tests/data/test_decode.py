import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from conftest import BUNDLED, ROOT
from hf_form import release_to_hf

from pronounce.core.artifacts import read_arrow
from pronounce.core.errors import RejectBoundExceeded
from pronounce.data.decode import make_report, run_decode, warning_lines


def decode(corpus, tmp_path, bound=1.0, max_seconds=30.0):
    out = tmp_path / "decoded"
    report = run_decode(str(corpus), out, max_seconds, bound, progress=False)
    return report, {s: read_arrow(out / f"{s}.arrow") for s in ("train", "test")}


def rows_by_id(tables):
    return {r["utt_id"]: r for t in tables.values() for r in t.to_pylist()}


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    return decode(BUNDLED, tmp_path_factory.mktemp("bundled"), bound=0.0)


def test_bundled_corpus_reads_to_67_train_and_40_test(bundled):
    report, tables = bundled
    assert (tables["train"].num_rows, tables["test"].num_rows) == (67, 40)
    assert report["rejected"] == 0 and report["kept"] == {"train": 67, "test": 40}
    assert report["warnings"] == {"missing_kaldi_text": {"count": 0, "ids": []}, "silent_audio": {"count": 0, "ids": []}}


def test_theme_iy_pronounced_ah(bundled):
    utt = rows_by_id(bundled[1])["000010113"]
    assert utt["text"] == "THEN HE WENT TO THEME PARK"
    theme = utt["canonical_phones"].index("TH")
    assert utt["canonical_phones"][theme:theme + 3] == ["TH", "IY", "M"]
    assert utt["pronounced_phones"][theme:theme + 3] == ["TH", "AH", "M"]
    assert utt["pronounced_phones"][:theme] == utt["canonical_phones"][:theme]
    assert utt["pronounced_phones"][theme + 3:] == utt["canonical_phones"][theme + 3:]


def test_unk_annotations_come_out_as_unk(bundled):
    rows = rows_by_id(bundled[1])
    # GREY said as F <unk> IH: G -> F, R unclear, EY -> IH.
    assert rows["000050083"]["canonical_phones"][-3:] == ["G", "R", "EY"]
    assert rows["000050083"]["pronounced_phones"][-3:] == ["F", "<unk>", "IH"]
    assert rows["000050118"]["pronounced_phones"][-6:] == ["HH", "OW", "M", "T", "<unk>", "N"]  # HOMETOWN's AW
    assert "<unk>" in rows["000050118"]["pronounced_phones"]
    unk_total = sum(r["pronounced_phones"].count("<unk>") for r in rows.values())
    annotated = sum(m["pronounced_phone"] == "<unk>" for r in rows.values() for w in r["words"]
                    for m in w["mispronunciations"])
    assert unk_total == annotated == 2


def test_record_fields_and_audio(bundled):
    utt = rows_by_id(bundled[1])["000010011"]
    assert (utt["split"], utt["speaker"], utt["age"], utt["gender"]) == ("train", "0001", 6, "m")
    assert (utt["accuracy"], utt["fluency"], utt["prosodic"], utt["total"], utt["completeness"]) == (8, 9, 9, 8, 10)
    assert [w["text"] for w in utt["words"]] == ["WE", "CALL", "IT", "BEAR"]
    assert utt["words"][1]["phones"] == ["K", "AO0", "L"] and utt["words"][1]["phone_accuracies"] == [2, 1.8, 1.8]
    expected, rate = sf.read(BUNDLED / "WAVE/SPEAKER0001/000010011.WAV", dtype="int16")
    assert rate == 16000 and np.array_equal(np.asarray(utt["audio"], dtype=np.int16), expected)
    assert utt["num_samples"] == len(expected) and utt["duration"] == len(expected) / 16000
    # stress digits stripped; nothing mispronounced, so the pronounced phones are the canonical ones
    assert utt["canonical_phones"] == utt["pronounced_phones"] == ["W", "IY", "K", "AO", "L", "IH", "T", "B", "EH", "R"]


def test_hf_form_gives_identical_records(bundled, tmp_path):
    hf = release_to_hf(BUNDLED, tmp_path / "hf")
    report, tables = decode(hf, tmp_path)
    assert report == bundled[0] | {"max_reject_fraction": 1.0}
    for split in ("train", "test"):
        assert tables[split].equals(bundled[1][split])


# -- bad input: every utterance-level problem is a recorded reject with its reason ---------

def _wav(corpus, utt):
    return next(corpus.glob(f"WAVE/*/{utt}.WAV"))


def _truncate(c):
    data = _wav(c, "000010011").read_bytes()
    _wav(c, "000010011").write_bytes(data[: len(data) // 2])


def _zero_bytes(c):
    _wav(c, "000010011").write_bytes(b"")


def _nan(c):
    sf.write(_wav(c, "000010011"), np.full(1600, np.nan), 16000, subtype="FLOAT", format="WAV")


def _missing_file(c):
    _wav(c, "000010011").unlink()


def _too_long(c):
    sf.write(_wav(c, "000010011"), np.zeros(16000 * 31), 16000, subtype="PCM_16", format="WAV")


# The reader's own reject reasons (labels, missing files) are tests/data/test_corpus.py's; one of them
# here shows a reader reject reaches the report like an audio reject.
@pytest.mark.parametrize("breakage,reason", [
    (_truncate, "truncated_audio"), (_zero_bytes, "empty_audio"), (_nan, "non_finite_audio"),
    (_too_long, "too_long"), (_missing_file, "missing_audio_file"),
])
def test_bad_utterance_is_recorded_with_its_reason(corpus_copy, tmp_path, breakage, reason):
    breakage(corpus_copy)
    report, tables = decode(corpus_copy, tmp_path)
    assert report["rejected"] == 1
    assert list(report["by_reason"]) == [reason]
    assert report["by_reason"][reason]["utterances"][0]["utt_id"] == "000010011"
    assert tables["train"].num_rows == 66 and "000010011" not in rows_by_id(tables)
    assert json.loads((tmp_path / "decoded/report.json").read_text()) == report


def test_other_rate_and_stereo_are_converted_not_rejected(corpus_copy, tmp_path):
    mono, _ = sf.read(_wav(corpus_copy, "000010011"))
    sf.write(_wav(corpus_copy, "000010011"), np.stack([mono, mono], 1), 16000, subtype="PCM_16", format="WAV")
    sf.write(_wav(corpus_copy, "000010035"), np.zeros(22050), 22050, subtype="PCM_16", format="WAV")
    report, tables = decode(corpus_copy, tmp_path)
    rows = rows_by_id(tables)
    assert report["rejected"] == 0
    assert rows["000010011"]["num_samples"] == len(mono) and rows["000010035"]["num_samples"] == 16000


def test_clipping_when_rounding_to_16_bits_is_reported(corpus_copy, tmp_path, bundled):
    assert bundled[0]["clipped"] == {"samples": 0, "utterances": {}}  # 16-bit sources: lossless
    loud = np.zeros(16000, dtype=np.float32)
    loud[100:103] = [1.5, -1.25, 0.5]
    sf.write(_wav(corpus_copy, "000010011"), loud, 16000, subtype="FLOAT", format="WAV")
    report, tables = decode(corpus_copy, tmp_path)
    assert report["rejected"] == 0 and report["clipped"] == {"samples": 2, "utterances": {"000010011": 2}}
    assert rows_by_id(tables)["000010011"]["audio"][100:103] == [32767, -32768, 16384]


# -- kept but odd: counted as warnings with their ids, never silent ---------------------------

def _silence(c):
    n = len(sf.read(_wav(c, "000010011"))[0])
    sf.write(_wav(c, "000010011"), np.zeros(n), 16000, subtype="PCM_16", format="WAV")
    sf.write(_wav(c, "000010035"), np.zeros(22050, dtype=np.float32), 22050, subtype="FLOAT", format="WAV")


def _drop_kaldi_text(c):
    for split, utt in (("train", "000010011"), ("test", "000030024")):
        lines = (c / split / "text").read_text().splitlines(keepends=True)
        (c / split / "text").write_text("".join(line for line in lines if not line.startswith(utt)))


def test_silent_clips_are_kept_with_a_warning(corpus_copy, tmp_path):
    _silence(corpus_copy)
    report, tables = decode(corpus_copy, tmp_path)
    rows = rows_by_id(tables)
    assert report["rejected"] == 0 and report["kept"] == {"train": 67, "test": 40}
    # the 16-bit file and the converted float file (22.05 kHz, resampled) alike
    assert report["warnings"]["silent_audio"] == {"count": 2, "ids": ["000010011", "000010035"]}
    assert report["warnings"]["missing_kaldi_text"]["count"] == 0
    assert not any(rows["000010011"]["audio"]) and rows["000010035"]["num_samples"] == 16000
    assert json.loads((tmp_path / "decoded/report.json").read_text()) == report


def test_utterance_missing_from_kaldi_text_is_kept_with_a_warning(corpus_copy, tmp_path, bundled):
    _drop_kaldi_text(corpus_copy)
    report, tables = decode(corpus_copy, tmp_path)
    assert report["rejected"] == 0
    assert report["warnings"]["missing_kaldi_text"] == {"count": 2, "ids": ["000010011", "000030024"]}
    assert report["warnings"]["silent_audio"]["count"] == 0
    # its text comes from scores.json: the records are the bundled corpus's, unchanged
    for split in ("train", "test"):
        assert tables[split].equals(bundled[1][split])


def test_stage_script_names_the_warnings_at_the_end(corpus_copy, tmp_path):
    _silence(corpus_copy)
    _drop_kaldi_text(corpus_copy)
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text().replace(
        "corpus: data/speechocean762-mini", f"corpus: {corpus_copy}"))
    run = stage(tmp_path, "corpus.py", "--out", "data/corpus.json")
    assert run.returncode == 0, run.stderr
    run = stage(tmp_path, "decode.py", "--pin", "data/corpus.json", "--out", "data/decoded")
    assert run.returncode == 0, run.stderr
    last = run.stdout.strip().splitlines()[-2:]
    assert last == ["decode: warning: missing_kaldi_text: 2 utterance(s) kept (000010011, 000030024)",
                    "decode: warning: silent_audio: 2 utterance(s) kept (000010011, 000010035)"]
    assert json.loads((tmp_path / "data/decoded/report.json").read_text())["warnings"]["silent_audio"]["count"] == 2


def test_warning_lines_name_at_most_five_ids():
    report = make_report({"train": 7, "test": 0}, {}, 0.1, warnings={"silent_audio": [f"u{i}" for i in range(7)]})
    assert report["warnings"]["missing_kaldi_text"] == {"count": 0, "ids": []}
    assert warning_lines(report) == ["decode: warning: silent_audio: 7 utterance(s) kept (u0, u1, u2, u3, u4 and 2 more)"]


def test_rejects_above_the_bound_fail_with_a_clear_message(corpus_copy, tmp_path):
    for utt in ("000010011", "000010035", "000010053"):
        _wav(corpus_copy, utt).unlink()
    with pytest.raises(RejectBoundExceeded, match=r"3 of 107 utterances rejected.*missing_audio_file=3"):
        run_decode(str(corpus_copy), tmp_path / "decoded", 30.0, 0.02, progress=False)
    assert not (tmp_path / "decoded").exists()  # nothing a later stage could take for finished
    assert json.loads((tmp_path / "decoded-rejects.json").read_text())["rejected"] == 3


# An unusable corpus path or scores.json: tests/data/test_corpus.py; here, how the stage reports it.
def test_stage_script_prints_one_line_not_a_traceback(corpus_copy, tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text().replace(
        "corpus: data/speechocean762-mini", f"corpus: {tmp_path / 'missing'}"))
    # A pin of the missing folder (as one written before it went), and one of another corpus.
    pin, stale = tmp_path / "pin.json", tmp_path / "stale.json"
    for path, corpus in ((pin, str(tmp_path / "missing")), (stale, "data/elsewhere")):
        path.write_text(json.dumps({"corpus": corpus, "kind": "release", "id": None, "commit": None, "digest": "md5:0"}))
    for run in (stage(tmp_path, "corpus.py", "--out", "data/corpus.json"),  # the stage that pins it
                stage(tmp_path, "decode.py", "--pin", str(pin), "--out", "data/decoded")):
        assert run.returncode == 2
        assert "Traceback" not in run.stderr and run.stderr.startswith("error: data.corpus:"), run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
    # decode refuses a pin of another corpus than data.corpus (a stale pin), and no pin at all.
    stale = stage(tmp_path, "decode.py", "--pin", str(stale), "--out", "data/decoded")
    assert stale.returncode == 2 and "pins" in stale.stderr and "run `dvc repro`" in stale.stderr, stale.stderr
    none = stage(tmp_path, "decode.py", "--pin", "data/none.json", "--out", "data/decoded")
    assert none.returncode == 2 and "cannot read the corpus pin" in none.stderr, none.stderr


def stage(cwd, script, *args):
    return subprocess.run([sys.executable, str(ROOT / "stages" / script), *args], cwd=cwd, capture_output=True,
                          text=True)
