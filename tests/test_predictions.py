"""The predictions files: rows built from generations (parsed, sorted), and their exact bytes."""

from dataclasses import dataclass

from pronounce.predictions import BASE_LABEL, BASE_NAME, FINAL, prediction_rows, read_jsonl, sort_rows, write_jsonl

APA = '{"accuracy": 8, "fluency": 7, "prosodic": 6, "total": 7}'
MDD = '{"word_transcript": "a cat", "phoneme_transcript": "AH K AE T"}'


@dataclass
class Named:
    name: str
    epoch: int | None


def gen(utt, task, raw, stopped="eos"):
    return {"utt_id": utt, "task": task, "raw": raw, "n_tokens": 7, "stopped": stopped}


def test_the_names_the_stages_share():
    # predictions/base/ and final.jsonl are paths on disk and in dvc.yaml: renaming them is a migration
    assert (BASE_NAME, FINAL) == ("base", "final")
    assert BASE_LABEL == "base + speech LoRA (no training)"


def test_prediction_rows_are_sorted_and_parsed():
    rows = prediction_rows(Named("epoch-2", 2), [gen("u2", "apa", APA), gen("u1", "mdd", MDD),
                                                 gen("u1", "apa", "I cannot rate this.", "max_new_tokens")])
    assert [(r["utt_id"], r["task"]) for r in rows] == [("u1", "apa"), ("u1", "mdd"), ("u2", "apa")]
    assert rows[0] == {"utt_id": "u1", "task": "apa", "checkpoint": "epoch-2", "epoch": 2,
                       "raw": "I cannot rate this.", "n_tokens": 7, "stopped": "max_new_tokens",
                       "status": "no_fields", "flags": [], "fields": None}
    assert rows[1]["status"] == "json" and rows[1]["fields"] == {"word_transcript": "a cat",
                                                                  "phoneme_transcript": ["AH", "K", "AE", "T"]}
    assert rows[2]["fields"] == {"accuracy": 8, "fluency": 7, "prosodic": 6, "total": 7}
    assert prediction_rows(Named("final", None), [gen("u1", "apa", APA)])[0]["epoch"] is None


def test_jsonl_bytes_are_stable_and_read_back(tmp_path):
    rows = [{"utt_id": "u1", "task": "mdd", "raw": "ə", "fields": None, "epoch": 0}, {"b": 1, "a": [2]}]
    write_jsonl(tmp_path / "p.jsonl", rows)
    # keys sorted, one object per line, UTF-8 as it is (not \u escapes), a final newline
    assert (tmp_path / "p.jsonl").read_bytes() == (
        '{"epoch": 0, "fields": null, "raw": "ə", "task": "mdd", "utt_id": "u1"}\n{"a": [2], "b": 1}\n'
    ).encode("utf-8")
    assert read_jsonl(tmp_path / "p.jsonl") == rows
    (tmp_path / "gap.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert read_jsonl(tmp_path / "gap.jsonl") == [{"a": 1}, {"a": 2}]


def test_sort_rows_orders_by_utterance_then_task():
    rows = [{"utt_id": "u10", "task": "apa"}, {"utt_id": "u1", "task": "mdd"}, {"utt_id": "u1", "task": "apa"}]
    assert sort_rows(rows) == [rows[2], rows[1], rows[0]]
