"""Stage `materialize` (pronounce.task.materialize) on the decoded bundled corpus: two instances per
utterance, the exact prompt and answer strings, the link to the clip, the dummy input_ids."""

import json

import pyarrow as pa
import pytest

from pronounce.core.artifacts import ArrowWriter, read_arrow
from pronounce.task import prompts
from pronounce.task.materialize import SCHEMA, instances, load_instances, run_materialize

AUDIO = "<|audio|>"  # the tiny model's placeholder; materialize takes it as given, never hard-codes it


@pytest.fixture(scope="module")
def decoded(decoded_bundle):
    return decoded_bundle  # the test run's, read only


@pytest.fixture(scope="module")
def materialized(decoded, tmp_path_factory):
    out = tmp_path_factory.mktemp("materialize") / "materialized"
    counts = run_materialize(decoded, out, AUDIO, progress=False)
    return counts, out


def test_two_instances_per_utterance_apa_then_mdd(decoded, materialized):
    counts, out = materialized
    assert counts == {"train": {"utterances": 67, "instances": 134}, "test": {"utterances": 40, "instances": 80}}
    assert json.loads((out / "summary.json").read_text()) == {"audio_token": AUDIO, "splits": counts}
    for split in ("train", "test"):
        table, clips = read_arrow(out / f"{split}.arrow"), read_arrow(decoded / f"{split}.arrow")
        assert table.schema == SCHEMA
        rows = table.to_pylist()
        assert [r["task"] for r in rows] == ["apa", "mdd"] * clips.num_rows
        # audio_row is the utterance's row in decoded/<split>.arrow: both instances point at its clip
        assert [r["audio_row"] for r in rows] == [i // 2 for i in range(len(rows))]
        ids, durations = clips.column("utt_id").to_pylist(), clips.column("duration").to_pylist()
        assert [r["utt_id"] for r in rows] == [ids[r["audio_row"]] for r in rows]
        assert [r["duration"] for r in rows] == [durations[r["audio_row"]] for r in rows]
        assert {r["split"] for r in rows} == {split}
        # The dummy column that makes trl's SFTTrainer skip its own tokenisation; never fed to the model.
        assert all(r["input_ids"] == [0] for r in rows)
        assert all(r["text"] == r["prompt"] + r["answer"] + prompts.END for r in rows)


def test_the_instances_of_a_bundled_utterance_exactly(materialized):
    rows = [r for r in read_arrow(materialized[1] / "train.arrow").to_pylist() if r["utt_id"] == "000010113"]
    apa, mdd = rows
    # The human sentence scores (accuracy 6, fluency 9, prosodic 8, total 5; completeness is not asked)
    assert apa["prompt"] == "<|user|><|APA|><|audio|>" + prompts.APA_PROMPT + "<|end|><|assistant|>"
    assert apa["answer"] == '{"accuracy": 6, "fluency": 9, "prosodic": 8, "total": 5}'
    # The phones as pronounced: THEME's IY said as AH, stress digits stripped
    assert mdd["prompt"] == "<|user|><|MDD|><|audio|>" + prompts.MDD_PROMPT + "<|end|><|assistant|>"
    assert mdd["answer"] == ('{"word_transcript": "THEN HE WENT TO THEME PARK", '
                             '"phoneme_transcript": "DH EH N HH IY W EH N T T UW TH AH M P AA R K"}')
    assert mdd["text"] == mdd["prompt"] + mdd["answer"] + "<|end|>"
    assert prompts.APA_PROMPT.startswith("Rate the pronunciation of the audio.\n\n**Accuracy**\nScore range: 0 - 10\n")
    assert prompts.MDD_PROMPT.startswith("Transcribe the audio utterance, providing both a word-level transcript")


def test_the_audio_placeholder_is_the_one_given():
    utt = {"utt_id": "u", "split": "test", "text": "HI", "accuracy": 7.0, "fluency": 8.0, "prosodic": 6.0,
           "total": 7.0, "pronounced_phones": ["HH", "<unk>"], "duration": 1.5}
    apa, mdd = instances(utt, 3, "<AUDIO>")
    assert apa["prompt"].startswith("<|user|><|APA|><AUDIO>Rate") and mdd["prompt"].startswith("<|user|><|MDD|><AUDIO>")
    assert mdd["answer"] == '{"word_transcript": "HI", "phoneme_transcript": "HH <unk>"}'
    assert (apa["audio_row"], mdd["audio_row"], apa["duration"]) == (3, 3, 1.5)


def test_rerun_is_byte_identical_and_loads_as_a_dataset(decoded, materialized, tmp_path):
    run_materialize(decoded, tmp_path / "again", AUDIO, progress=False)
    for name in ("train.arrow", "test.arrow", "summary.json"):
        assert (tmp_path / "again" / name).read_bytes() == (materialized[1] / name).read_bytes(), name
    ds = load_instances(materialized[1], "test")
    assert len(ds) == 80 and ds[1]["task"] == "mdd" and ds[1]["input_ids"] == [0]


def test_a_missing_decoded_split_is_named_and_leaves_no_output(tmp_path):
    (tmp_path / "decoded").mkdir()
    with pytest.raises(FileNotFoundError, match=r"decoded/train\.arrow"):
        run_materialize(tmp_path / "decoded", tmp_path / "out", AUDIO, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decoded"]  # nothing half-written


def test_a_decoded_file_without_the_label_columns_is_refused(tmp_path):
    (tmp_path / "decoded").mkdir()
    for split in ("train", "test"):
        w = ArrowWriter(tmp_path / "decoded" / f"{split}.arrow", pa.schema([("utt_id", pa.string())]))
        w.write({"utt_id": "x"})
        w.close()
    with pytest.raises(KeyError, match=r'Field "split" does not exist in schema'):
        run_materialize(tmp_path / "decoded", tmp_path / "out", AUDIO, progress=False)
    assert not (tmp_path / "out").exists()
