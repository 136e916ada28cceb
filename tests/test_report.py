"""The report: every config x epoch row beside the paper's, the tiny-model warning, the plot data;
and the offline page template for `dvc plots show`."""

import json
import re
from pathlib import Path

from pronounce import plots as P
from pronounce.report import TINY_WARNING, run_report
from test_score import make_scored, params

ROOT = Path(__file__).resolve().parents[1]


def scored(tmp_path, base="builtin:tiny", configs=("cfg_a", "cfg_b")):
    p = params(base=base, configs=configs)
    p["configs"]["cfg_b"]["unfreeze_audio"] = True
    for name in configs:
        make_scored(tmp_path, name, p)
    live = tmp_path / "dvclive" / "cfg_a" / "plots" / "metrics" / "train"
    live.mkdir(parents=True)
    (live / "loss.tsv").write_text("step\tloss\n5\t7.5\n10\t6.25\n")
    (live / "epoch.tsv").write_text("step\tepoch\n5\t0.5\n10\t1.0\n")
    return p


def report(tmp_path, p):
    return run_report(p, tmp_path / "scores", tmp_path / "dvclive", tmp_path / "metrics" / "report.md",
                      tmp_path / "metrics" / "plots", log=None)


def table_rows(text):
    """(config, strategy, epoch, source) of the Table 3 section's rows."""
    section = text.split("## Table 3 layout")[1].split("\n## ")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    return [tuple(r[:4]) for r in rows[2:]]


def test_table_has_every_config_epoch_row_beside_the_paper(tmp_path):
    p = scored(tmp_path)
    text = report(tmp_path, p)
    assert (tmp_path / "metrics" / "report.md").read_text() == text
    rows = table_rows(text)
    assert rows[:2] == [("(base model)", "none", "0", "**ours**"), ("", "none", "0", "paper")]
    ours = [r for r in rows if r[3] == "**ours**"]
    # each config: epoch 2 and epoch 3 (= the final adapter, listed once), plus the base model once
    assert ours == [("(base model)", "none", "0", "**ours**"),
                    ("cfg_a", "LoRA", "2", "**ours**"), ("cfg_a", "LoRA", "3 (final)", "**ours**"),
                    ("cfg_b", "Unfreeze", "2", "**ours**"), ("cfg_b", "Unfreeze", "3 (final)", "**ours**")]
    paper = [(r[1], r[2]) for r in rows if r[3] == "paper"]
    assert paper == [("none", "0")] + [(s, str(e)) for s in ("LoRA", "Unfreeze") for e in (1, 2, 3, 4)]
    # ours at epoch k sits right before the paper's epoch-k row of the same strategy
    i = rows.index(("cfg_a", "LoRA", "2", "**ours**"))
    assert rows[i + 1] == ("", "LoRA", "2", "paper")


def test_paper_rows_appear_once_per_strategy(tmp_path):
    text = report(tmp_path, scored(tmp_path, configs=("cfg_a", "cfg_b", "cfg_c")))
    rows = table_rows(text)
    lora = [r for r in rows if r[1] == "LoRA"]
    assert lora == [("", "LoRA", "1", "paper"),
                    ("cfg_a", "LoRA", "2", "**ours**"), ("cfg_c", "LoRA", "2", "**ours**"), ("", "LoRA", "2", "paper"),
                    ("cfg_a", "LoRA", "3 (final)", "**ours**"), ("cfg_c", "LoRA", "3 (final)", "**ours**"),
                    ("", "LoRA", "3", "paper"), ("", "LoRA", "4", "paper")]
    assert "| 0.656 |" in text.split("## Headline")[1]  # the paper's LoRA epoch-3 accuracy PCC target
    assert "| 0.621 |" in text.split("## Headline")[1]  # Unfreeze epoch 3
    assert "builtin:tiny" in text and "data/speechocean762-mini" in text
    assert "4 test utterances" in text and "the paper's 2500" in text


def test_tiny_model_warning_is_loud_and_only_for_the_tiny_model(tmp_path):
    text = report(tmp_path, scored(tmp_path))
    assert text.startswith(TINY_WARNING) and text.splitlines()[0].startswith("> **⚠️ SMOKE RUN: NOT A REPRODUCTION.**")
    assert "NOT A REPRODUCTION" in text
    real = tmp_path / "real"
    text = report(real, scored(real, base="microsoft/Phi-4-multimodal-instruct"))
    assert "NOT A REPRODUCTION" not in text and "microsoft/Phi-4-multimodal-instruct" in text


def test_undefined_values_and_details_are_listed(tmp_path):
    text = report(tmp_path, scored(tmp_path))
    assert "- (base model), epoch 0: accuracy PCC, fluency PCC, prosodic PCC, total PCC: fewer than 2 pairs (0)" in text
    assert "- cfg_a, epoch 2: accuracy PCC, fluency PCC, prosodic PCC, total PCC: predictions are constant (5)" in text
    assert "p=" in text and "n=3" in text  # PCC p-values and n of the final adapter
    assert "How unparsed answers count" in text


def test_plot_data(tmp_path):
    report(tmp_path, scored(tmp_path))
    vs = json.loads((tmp_path / "metrics" / "plots" / "vs_paper.json").read_text())
    assert {"metric", "config", "source", "series", "value"} == set(vs[0])
    assert {(r["source"], r["series"]) for r in vs if r["metric"] == "wer"} == {
        ("ours", "cfg_a (e3)"), ("ours", "cfg_b (e3)"), ("paper", "paper LoRA (e3)"), ("paper", "paper Unfreeze (e3)")}
    loss = json.loads((tmp_path / "metrics" / "plots" / "train_loss.json").read_text())
    assert loss == [{"config": "cfg_a", "step": 5, "epoch": 0.5, "loss": 7.5},
                    {"config": "cfg_a", "step": 10, "epoch": 1.0, "loss": 6.25}]


# --------------------------------------------------------------------------- offline plots


def test_offline_template_is_in_sync_and_has_no_external_scripts():
    committed = (ROOT / ".dvc" / "plots" / "offline.html").read_text(encoding="utf-8")
    assert committed == P.offline_template(), "run `python -m pronounce.plots write`"
    assert "{plot_divs}" in committed and "{scripts}" not in committed
    assert P.external_scripts(committed) == []
    for name, _ in P.LIBRARIES:
        assert (ROOT / "plots" / "vendor" / name).read_text(encoding="utf-8") in committed


def test_external_scripts_detection():
    cdn = '<script src="https://cdn.jsdelivr.net/npm/vega@5.20.2"></script><script src=//x.org/a.js></script>'
    assert P.external_scripts(cdn) == ["https://cdn.jsdelivr.net/npm/vega@5.20.2", "//x.org/a.js"]
    assert P.external_scripts('<script src="vendor/vega.js"></script><script>var a = 1;</script>') == []


def test_dvc_config_points_at_the_offline_template():
    config = (ROOT / ".dvc" / "config").read_text(encoding="utf-8")
    assert re.search(r"^\s*html_template\s*=\s*plots/offline\.html\s*$", config, re.M)


def test_plot_templates_are_valid_json_with_the_data_anchor():
    for name in ("apa_scatter", "per_vs_accuracy", "vs_paper", "train_loss"):
        spec = json.loads((ROOT / "plots" / f"{name}.json").read_text(encoding="utf-8"))
        assert spec["data"] == {"values": "<DVC_METRIC_DATA>"}, name
