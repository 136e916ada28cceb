"""The predictions files: rows built from generations (parsed, sorted), and their exact bytes."""

from pronounce.task.predictions import BASE_LABEL, BASE_NAME, FINAL, read_jsonl, sort_rows, write_jsonl


def test_the_names_the_stages_share():
    # predictions/base/ and final.jsonl are paths on disk and in dvc.yaml: renaming them is a migration
    assert (BASE_NAME, FINAL) == ("base", "final")
    assert BASE_LABEL == "base + speech LoRA (no training)"


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
