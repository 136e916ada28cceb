"""The report: every config x epoch row beside the paper's, the tiny-model warning, the plot data;
and the offline page template for `dvc plots show`."""

import json
import re
from pathlib import Path

from test_score import good_rows, make_scored, params, report_job, score_job, write_labels, write_predictions

from pronounce.scoring import paper
from pronounce.scoring import plots as P
from pronounce.scoring import score as S
from pronounce.scoring.report import TINY_WARNING, run_report
from pronounce.task.predictions import BASE_LABEL

ROOT = Path(__file__).resolve().parents[2]


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
    return run_report(report_job(p), tmp_path / "scores", tmp_path / "dvclive", tmp_path / "metrics" / "report.md",
                      tmp_path / "metrics" / "plots", log=None)


def table_rows(text):
    """(config, strategy, epoch, source) of the Table 3 section's rows."""
    section = text.split("## Table 3 layout")[1].split("\n## ")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("|")]
    return [tuple(r[:4]) for r in rows[2:]]


def test_table_has_every_config_epoch_row_beside_the_paper(tmp_path):
    p = scored(tmp_path)
    text = report(tmp_path, p)
    assert (tmp_path / "metrics" / "report.md").read_text() == text
    rows = table_rows(text)
    assert BASE_LABEL == "base + speech LoRA (no training)"  # epoch 0 is the base model as it hears
    assert rows[:2] == [(BASE_LABEL, "none", "0", "**ours**"), ("", "none", "0", "paper")]
    ours = [r for r in rows if r[3] == "**ours**"]
    # each config: epoch 2 and epoch 3 (= the final adapter, listed once), plus the base model once
    assert ours == [(BASE_LABEL, "none", "0", "**ours**"),
                    ("cfg_a", "LoRA", "2", "**ours**"), ("cfg_a", "LoRA", "3 (final)", "**ours**"),
                    ("cfg_b", "Unfreeze", "2", "**ours**"), ("cfg_b", "Unfreeze", "3 (final)", "**ours**")]
    paper = [(r[1], r[2]) for r in rows if r[3] == "paper"]
    assert paper == [("none", "0")] + [(s, str(e)) for s in ("LoRA", "Unfreeze") for e in (1, 2, 3, 4)]
    # ours at epoch k sits right before the paper's epoch-k row of the same strategy
    i = rows.index(("cfg_a", "LoRA", "2", "**ours**"))
    assert rows[i + 1] == ("", "LoRA", "2", "paper")


def test_the_report_says_which_config_stands_beside_which_strategy_and_why(tmp_path):
    """params.yaml's three configs: a fresh LoRA and the continued speech LoRA beside the paper's
    LoRA-only rows, each with its reading of the paper (which names no rank), and Unfreeze."""
    p = params(configs=("paper_r64", "pretrained_r320", "unfreeze"))
    p["configs"]["pretrained_r320"].update(init="speech-lora", lora_params="model")
    p["configs"]["unfreeze"].update(init="speech-lora", lora_params="model", unfreeze_audio=True)
    for name in p["configs"]:
        make_scored(tmp_path, name, p)
    text = report(tmp_path, p)
    rows = section_rows(text, "Which config stands beside which of the paper's strategies")
    assert [r[:2] for r in rows] == [["paper_r64", "LoRA"], ["pretrained_r320", "LoRA"], ["unfreeze", "Unfreeze"]]
    fresh, speech, unfreeze = (r[2] for r in rows)
    assert "third-party reproduction" in fresh and "r=64" in fresh and "states no rank" in fresh
    assert '"only the LoRA adapter requires fine-tuning"' in speech and "speech LoRA" in speech and "r=320" in speech
    assert "audio encoder and audio projector trained" in unfreeze and "speech LoRA" in unfreeze
    # after the verdicts and the table they explain, before the per-epoch detail
    assert text.index("## Table 3 layout") < text.index("## Which config") < text.index("## Each epoch minus")


def test_paper_rows_appear_once_per_strategy(tmp_path):
    text = report(tmp_path, scored(tmp_path, configs=("cfg_a", "cfg_b", "cfg_c")))
    rows = table_rows(text)
    lora = [r for r in rows if r[1] == "LoRA"]
    assert lora == [("", "LoRA", "1", "paper"),
                    ("cfg_a", "LoRA", "2", "**ours**"), ("cfg_c", "LoRA", "2", "**ours**"), ("", "LoRA", "2", "paper"),
                    ("cfg_a", "LoRA", "3 (final)", "**ours**"), ("cfg_c", "LoRA", "3 (final)", "**ours**"),
                    ("", "LoRA", "3", "paper"), ("", "LoRA", "4", "paper")]
    headline = section_rows(text, "Headline")  # the paper's epoch-3 accuracy PCC targets: LoRA, Unfreeze
    assert headline[1][1:3] == ["paper, LoRA epoch 3", "0.656"] and headline[4][1:3] == ["paper, Unfreeze epoch 3", "0.621"]
    assert "builtin:tiny" in text and "data/speechocean762-mini" in text
    assert "4 test utterances" in text and "the paper's 2500" in text


def section_rows(text, title):
    section = text.split(f"## {title}")[1].split("\n## ")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("|")]
    return rows[2:]


def test_every_epoch_of_the_paper_profile_is_set_beside_the_papers_row(tmp_path):
    """Four epochs, all evaluated (the paper profile): each config's epoch k minus Table 3's row
    of epoch k and the config's strategy; the headline is the final adapter (epoch 4) vs epoch 4."""
    p = params(configs=("lora", "unfreeze"))
    p["configs"]["unfreeze"]["unfreeze_audio"] = True
    labels = write_labels(tmp_path / "decoded" / "test.arrow")
    write_predictions(tmp_path / "predictions" / "base", {"epoch-0": (0, good_rows("epoch-0", 0))})
    for name in p["configs"]:
        write_predictions(tmp_path / "predictions" / name, {
            "final": (4, good_rows("final", 4)), **{f"epoch-{k}": (k, good_rows(f"epoch-{k}", k)) for k in (1, 2, 3, 4)}})
        S.run_score(score_job(p, name), labels.parent, tmp_path / "predictions" / name, tmp_path / "predictions" / "base",
                    tmp_path / "metrics" / f"{name}.json", tmp_path / "scores" / name, log=None)
    text = report(tmp_path, p)
    rows = section_rows(text, "Each epoch minus the paper's row")
    assert [tuple(r[:3]) for r in rows] == [(BASE_LABEL, "none", "0")] + [
        (name, strategy, str(k)) for name, strategy in (("lora", "LoRA"), ("unfreeze", "Unfreeze")) for k in (1, 2, 3, 4)]
    ours = json.loads((tmp_path / "metrics" / "lora.json").read_text())["accuracy_pcc"]  # the same at every epoch
    table = {(r["strategy"], r["epoch"]): r for r in paper.PAPER_TABLE3}
    for r in rows:
        strategy, k = r[1], int(r[2])
        assert r[3] == f"{ours - table['none' if k == 0 else strategy, k]['accuracy_pcc']:+.3f}", r
    headline = section_rows(text, "Headline")
    assert headline[1][:3] == ["", "paper, LoRA epoch 4", "0.645"] and headline[4][:3] == ["", "paper, Unfreeze epoch 4", "0.743"]


def test_an_epoch_the_paper_lacks_is_named_not_compared(tmp_path):
    labels = write_labels(tmp_path / "decoded" / "test.arrow")
    write_predictions(tmp_path / "predictions" / "base", {"epoch-0": (0, good_rows("epoch-0", 0))})
    write_predictions(tmp_path / "predictions" / "cfg", {"final": (10, good_rows("final", 10)),
                                                          "epoch-10": (10, good_rows("epoch-10", 10))})
    S.run_score(score_job(params(), "cfg"), labels.parent, tmp_path / "predictions" / "cfg", tmp_path / "predictions" / "base",
                tmp_path / "metrics" / "cfg.json", tmp_path / "scores" / "cfg", log=None)
    text = report(tmp_path, params())
    assert section_rows(text, "Each epoch minus the paper's row")[1][:4] == ["cfg", "LoRA", "10", "(not in Table 3)"]
    # the smoke run's 10th epoch: against epoch 3, labelled as our choice (the paper names no headline epoch)
    assert section_rows(text, "Headline")[1][1] == "paper, LoRA epoch 3 (our choice)"


def test_tiny_model_warning_is_loud_and_only_for_the_tiny_model(tmp_path):
    text = report(tmp_path, scored(tmp_path))
    assert text.startswith(TINY_WARNING) and text.splitlines()[0].startswith("> **⚠️ SMOKE RUN: NOT A REPRODUCTION.**")
    assert "NOT A REPRODUCTION" in text
    real = tmp_path / "real"
    text = report(real, scored(real, base="microsoft/Phi-4-multimodal-instruct"))
    assert "NOT A REPRODUCTION" not in text and "microsoft/Phi-4-multimodal-instruct" in text


def test_undefined_values_and_details_are_listed(tmp_path):
    text = report(tmp_path, scored(tmp_path))
    assert f"- {BASE_LABEL}, epoch 0: accuracy PCC, fluency PCC, prosodic PCC, total PCC: fewer than 2 pairs (0)" in text
    assert "- cfg_a, epoch 2: accuracy PCC, fluency PCC, prosodic PCC, total PCC: predictions are constant (5)" in text
    assert "p=" in text and "n=3" in text  # PCC p-values and n of the final adapter
    # the rule the scores were counted under, as the score stage recorded it in details.json
    assert f"## How unparsed answers count\n\n{S.UNPARSED_RULE}\n" in text


def test_tables_are_padded_pipe_tables_with_cells_as_formatted(tmp_path):
    text = report(tmp_path, scored(tmp_path))
    tables = [t for t in text.split("\n\n") if t.startswith("|")]
    # verdicts at a glance, Table 3, configs beside strategies, epoch differences, headline, verdicts,
    # APA with SCC/RMSE, paired comparisons, PCC details, MDD paper-style, MDD standard with context
    # rows, MDD counts
    assert len(tables) == 12
    for t in tables:
        lines = t.splitlines()
        assert len({len(line) for line in lines}) == 1, t  # columns line up in the raw file too
        assert set(lines[1]) == {"|", "-", ":"}
    table3 = tables[1].splitlines()
    # text columns left-aligned, metric columns right-aligned
    assert [c[:1] + c[-1:] for c in table3[1].strip("|").split("|")] == [":-"] * 4 + ["-:"] * 10
    # cells are not re-parsed as numbers: three decimals and the parse rates stay as written
    # the paper's row as it prints it: -0.0493 with four decimals, its one underlined (p >= 0.05) PCC marked
    assert section_rows(text, "Table 3 layout")[1][4:8] == ["-0.041", "-0.017 (p ≥ 0.05)", "-0.0493", "-0.104"]
    assert section_rows(text, "Table 3 layout")[0][-1] == "0.00 / 0.00"


def test_plot_data(tmp_path):
    report(tmp_path, scored(tmp_path))
    vs = json.loads((tmp_path / "metrics" / "plots" / "vs_paper.json").read_text())
    assert {"metric", "ours_metric", "note", "config", "source", "series", "value", "low", "high", "run"} == set(vs[0])
    assert {(r["source"], r["series"]) for r in vs if r["metric"] == "wer"} == {
        ("ours", "cfg_a (e3)"), ("ours", "cfg_b (e3)"), ("paper", "paper LoRA (e3)"), ("paper", "paper Unfreeze (e3)")}
    # error bars: ours with the interval of metrics/<config>.json, the paper's without; every row names the run
    metrics = json.loads((tmp_path / "metrics" / "cfg_a.json").read_text())
    wer = next(r for r in vs if r["metric"] == "wer" and r["config"] == "cfg_a" and r["source"] == "ours")
    assert (wer["low"], wer["value"], wer["high"]) == (metrics["wer_ci"]["low"], metrics["wer"], metrics["wer_ci"]["high"])
    assert wer["low"] < wer["high"]
    assert all(r["low"] is None and r["high"] is None for r in vs if r["source"] == "paper")
    # the paper's precision beside our paper-style one, labelled as the reconstruction, with its interval
    prec = {r["source"]: r for r in vs if r["ours_metric"] == "precision_paper_style" and r["config"] == "cfg_a"}
    assert prec["ours"]["metric"] == prec["paper"]["metric"] == "precision (paper-style)"
    assert (prec["ours"]["value"], prec["ours"]["low"]) == (metrics["precision_paper_style"],
                                                           metrics["precision_paper_style_ci"]["low"])
    assert prec["paper"]["value"] == 0.728 and "reconstructed from Table 3" in prec["ours"]["note"]
    assert not any(r["metric"] == "precision" or r["ours_metric"] == "precision" for r in vs)  # the standard: none
    spec = json.loads((ROOT / "plots" / "vs_paper.json").read_text(encoding="utf-8"))
    assert {r["metric"] for r in vs} == set(spec["facet"]["column"]["sort"])  # every panel in Table 3's order
    assert {r["run"] for r in vs} == {"SMOKE RUN, NOT A REPRODUCTION: builtin:tiny, data/speechocean762-mini, "
                                      "profile smoke"}
    loss = json.loads((tmp_path / "metrics" / "plots" / "train_loss.json").read_text())
    assert loss == [{"config": "cfg_a", "step": 5, "epoch": 0.5, "loss": 7.5},
                    {"config": "cfg_a", "step": 10, "epoch": 1.0, "loss": 6.25}]


# --------------------------------------------------------------------------- offline plots


def test_offline_template_is_in_sync_and_has_no_external_scripts():
    committed = (ROOT / ".dvc" / "plots" / "offline.html").read_text(encoding="utf-8")
    assert committed == P.offline_template(), "run `python -m pronounce.scoring.plots write`"
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


def test_the_vs_paper_plot_draws_our_intervals_and_names_the_run():
    """Error bars from the plot data's low/high (rows without an interval skipped), and one row of
    panels per run, headed by its `run` line (a smoke run's says it is not a reproduction)."""
    spec = json.loads((ROOT / "plots" / "vs_paper.json").read_text(encoding="utf-8"))
    assert spec["facet"]["row"]["field"] == "run" and "SMOKE RUN" in spec["facet"]["row"]["header"]["labelExpr"]
    bars = [layer for layer in spec["spec"]["layer"] if layer["mark"]["type"] == "rule"]
    assert len(bars) == 1 and bars[0]["encoding"]["y"]["field"] == "low" and bars[0]["encoding"]["y2"]["field"] == "high"
    assert bars[0]["transform"] == [{"filter": "isValid(datum.low) && isValid(datum.high)"}]


def test_intervals_verdicts_and_paired_comparisons(tmp_path):
    text = report(tmp_path, scored(tmp_path))
    # 2 speakers: the utterance-level interval, labelled, with the reason
    assert "**utterance-level** bootstrap" in text and "speaker-clustered interval undefined: 2 speaker(s)" in text
    assert "covers test-set sampling only" in text
    verdicts = section_rows(text, "Intervals and verdicts against the paper")
    details = json.loads((tmp_path / "scores" / "cfg_a" / "details.json").read_text())
    e3 = details["metrics"]["epochs"]["3"]
    row = next(r for r in verdicts if r[:3] == ["cfg_a", "3", "wer"])
    assert row[3:] == [f"{e3['wer']:.3f}", f"[{e3['wer_ci']['low']:.3f}, {e3['wer_ci']['high']:.3f}]", "0.140",
                       e3["verdict"]["wer"]]
    assert {r[6] for r in verdicts if not re.fullmatch(r"too few \(n = \d+\)", r[6])} <= {"consistent", "above",
                                                                                          "below", "n/a"}
    comps = section_rows(text, "Paired comparisons")
    # configs (cfg_b - cfg_a: the same answers, so a zero difference, p = 1) and consecutive epochs
    same = [r for r in comps if r[0] == "cfg_b final − cfg_a final"]
    assert [r[1] for r in same] == [*paper.HEADLINE, *paper.PAPER_STYLE_NAMES]  # both MDD countings, paired
    assert all(r[2] in ("+0.000", "n/a") for r in same)
    assert all(r[5] in ("no", "n/a") for r in same)
    assert any(r[0] == "cfg_a: epoch-3 − epoch-2" for r in comps) and "**paired**" in text
    apa = section_rows(text, "APA: PCC, Spearman (SCC) and RMSE")
    assert any(r[:3] == ["cfg_a", "epoch 3 (final)", "accuracy"] for r in apa)
    # the PCC with unparsed answers as the worst case, and how unparsed answers are treated
    assert S.UNPARSED_APA_WORST in text


def test_compare_two_runs_and_aggregate_seeds(tmp_path, capsys):
    from pronounce.scoring import uncertainty as RI
    for run in ("a", "b"):
        scored(tmp_path / run, configs=("cfg_a", "cfg_b"))
    text = RI.compare_runs(tmp_path / "a" / "scores", tmp_path / "b" / "scores", "cfg_a")
    assert "run B − run A" in text and "paired" in text
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| B")]
    assert {r[1] for r in rows} >= set(paper.HEADLINE) and all(r[5] in ("no", "n/a") for r in rows)
    RI.main(["--seeds", str(tmp_path / "a" / "scores"), str(tmp_path / "b" / "scores"), "--config", "cfg_a"])
    out = capsys.readouterr().out
    assert "over 2 runs (mean ± std over seeds)" in out and "| wer " in out


def test_the_first_lines_name_what_depends_on_the_machine(tmp_path):
    from pronounce.scoring.report import MACHINE_NOTE

    text = report(tmp_path, scored(tmp_path))
    assert text.startswith(TINY_WARNING + "\n" + MACHINE_NOTE)  # right under the smoke-run warning
    real = tmp_path / "real"
    text = report(real, scored(real, base="microsoft/Phi-4-multimodal-instruct"))
    assert text.startswith(MACHINE_NOTE) and "repro_check" in text.splitlines()[3]


def test_the_report_opens_with_the_verdicts_at_a_glance_then_the_table(tmp_path):
    """After the banner: the title, the verdict summary (one sentence with the counts, one row per row
    of ours beside a row of Table 3), then the Table 3 layout; the counts are the verdicts in the metrics."""
    from pronounce.scoring.report import MACHINE_NOTE

    text = report(tmp_path, scored(tmp_path))
    rest = text[len(TINY_WARNING + "\n" + MACHINE_NOTE + "\n"):].splitlines()
    assert rest[:4] == ["# Results: Ahn & Nam (2025) reproduction", "", "## Verdicts at a glance", ""]
    counts = {"consistent": 0, "above": 0, "below": 0, "too few": 0, "n/a": 0}
    for name in ("cfg_a", "cfg_b"):
        epochs = json.loads((tmp_path / "metrics" / f"{name}.json").read_text())["epochs"]
        for epoch, e in epochs.items():
            if epoch == "0" and name == "cfg_b":
                continue  # the base model once
            for k in paper.HEADLINE:
                v = e["verdict"].get(paper.JUDGED_BY[k])
                counts["n/a" if v is None else "too few" if v.startswith("too few") else v] += 1
    assert rest[4] == (f"**Of {sum(counts.values())} Table 3 numbers set beside ours: "
                       + ", ".join(f"{n} {k}" for k, n in counts.items()) + ".**")
    table = [line for line in rest[5:rest.index("## Table 3 layout: ours beside the paper's")] if line.startswith("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    assert [r[:2] for r in rows] == [[f"{BASE_LABEL}, epoch 0", "none, epoch 0"],
                                     ["cfg_a, epoch 2", "LoRA, epoch 2"], ["cfg_a, epoch 3", "LoRA, epoch 3"],
                                     ["cfg_b, epoch 2", "Unfreeze, epoch 2"], ["cfg_b, epoch 3", "Unfreeze, epoch 3"]]
    assert all(sum(map(int, r[2:])) == len(paper.HEADLINE) for r in rows)
    # what produced our numbers follows the table
    assert text.index("## Table 3 layout") < text.index("Our rows were produced by base model")


def test_a_final_epoch_table3_lacks_is_summarised_against_our_choice_of_headline(tmp_path):
    labels = write_labels(tmp_path / "decoded" / "test.arrow")
    write_predictions(tmp_path / "predictions" / "base", {"epoch-0": (0, good_rows("epoch-0", 0))})
    write_predictions(tmp_path / "predictions" / "cfg", {"final": (20, good_rows("final", 20))})
    S.run_score(score_job(params(), "cfg"), labels.parent, tmp_path / "predictions" / "cfg",
                tmp_path / "predictions" / "base", tmp_path / "metrics" / "cfg.json", tmp_path / "scores" / "cfg",
                log=None)
    rows = section_rows(report(tmp_path, params()), "Verdicts at a glance")
    assert [r[:2] for r in rows] == [
        [f"{BASE_LABEL}, epoch 0", "none, epoch 0"],
        ["cfg, epoch 20 (final)", "LoRA, epoch 3 (our choice of headline: Table 3 has no epoch 20)"]]


def test_too_few_events_read_too_few_in_every_section(tmp_path):
    """One mispronounced phone in the fixture's test set: under min_events.mispronounced 2, the standard
    recall, precision and F1 get "too few (n = 1)" in their intervals and paired tests, and are listed;
    the paper's P/R/F1 verdicts, on the paper-style metrics, do not rest on mispronounced phones."""
    p = params(configs=("cfg_a", "cfg_b"))
    p["score"]["intervals"]["min_events"] = {"utterances": 2, "mispronounced": 2, "rejections": 1}
    p["configs"]["cfg_b"]["unfreeze_audio"] = True
    for name in ("cfg_a", "cfg_b"):
        make_scored(tmp_path, name, p)
    text = report(tmp_path, p)
    verdicts = {(r[0], r[1], r[2]): r for r in section_rows(text, "Intervals and verdicts against the paper")}
    assert verdicts["cfg_a", "3", "recall (paper-style)"][6] in ("consistent", "above", "below")
    assert verdicts["cfg_a", "3", "wer"][4].startswith("[")
    assert not any(k[2] in ("precision", "recall", "f1") for k in verdicts)  # the standard: no verdict
    standard = {(r[0], r[1]): r for r in section_rows(text, "MDD: paper-style and standard counting")
                if len(r) == 6}
    assert standard["cfg_a", "epoch 3 (final)"][3] == "1.000, too few (n = 1)"  # recall: the value stays
    comps = [r for r in section_rows(text, "Paired comparisons") if r[1] == "recall"]
    assert comps and all(r[3] == "too few (n = 1)" and r[4] == "n/a" and r[5] == "too few (n = 1)" for r in comps)
    assert ("- cfg_a, epoch 3 (final): f1, precision, recall: no interval, verdict or paired test: too few: 1 mispronounced "
            "phone, fewer than score.intervals.min_events.mispronounced=2") in text
    assert "No interval, verdict or paired test below `score.intervals.min_events`: 2 utterances, " \
           "2 mispronounced phones, 1 rejection." in text
    summary = section_rows(text, "Verdicts at a glance")
    assert all(int(r[5]) == 0 for r in summary[1:])  # no verdict of a trained row rests on mispronounced phones


def test_too_few_answered_utterances_withhold_the_paper_style_verdicts(tmp_path):
    """The fixture's final adapter answers 3 of 4 MDD prompts (and 3 APA ones): under
    min_events.utterances 4 the paper-style precision and F1 (3 answered utterances behind them) and
    the PCCs read "too few (n = 3)"; recall (4 annotated utterances), WER and PER keep their verdicts."""
    p = params(configs=("cfg_a",))
    p["score"]["intervals"]["min_events"] = {"utterances": 4, "mispronounced": 1, "rejections": 1}
    make_scored(tmp_path, "cfg_a", p)
    text = report(tmp_path, p)
    verdicts = {(r[0], r[1], r[2]): r[6] for r in section_rows(text, "Intervals and verdicts against the paper")}
    assert verdicts["cfg_a", "3", "precision (paper-style)"] == verdicts["cfg_a", "3", "f1 (paper-style)"] \
        == verdicts["cfg_a", "3", "accuracy_pcc"] == "too few (n = 3)"
    assert all(verdicts["cfg_a", "3", k] in ("consistent", "above", "below") for k in ("recall (paper-style)", "wer", "per"))
    rows = {r[0]: r for r in section_rows(text, "Verdicts at a glance")}
    assert rows["cfg_a, epoch 3"][5] == "6"  # 4 PCCs, precision and F1
    mdd = {r[0]: r for r in section_rows(text, "MDD: paper-style and standard counting") if len(r) == 11}
    assert mdd["cfg_a, epoch 3"][2].endswith(", too few (n = 3)") and mdd["cfg_a, epoch 3"][4] == "too few (n = 3)"


def test_the_mdd_section_judges_the_paper_style_and_sets_the_standard_beside_the_fields_results(tmp_path):
    """The MDD section: one line saying what the paper-style reading is and that it is a
    reconstruction; the paper-style P/R/F1 with intervals and the verdicts of the metrics; the
    standard counting with intervals, no verdict, beside MuFFIN's and HMamba's published F1 (context,
    not targets, with their sources)."""
    text = report(tmp_path, scored(tmp_path))
    section = text.split("## MDD: paper-style and standard counting")[1].split("\n## ")[0]
    assert f"**Paper-style**: {paper.PAPER_STYLE_NOTE}." in section and "reconstructed from Table 3" in section
    assert "context, not targets" in section and "canonical phones" in section
    rows = section_rows(text, "MDD: paper-style and standard counting")
    styled = {r[0]: r for r in rows if len(r) == 11}
    metrics = json.loads((tmp_path / "metrics" / "cfg_a.json").read_text())
    e3 = metrics["epochs"]["3"]
    ci = e3["recall_paper_style_ci"]
    assert styled["cfg_a, epoch 3"][5:8] == [f"{e3['recall_paper_style']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]",
                                             "0.721", e3["verdict"]["recall_paper_style"]]
    standard = {(r[0], r[1]): r for r in rows if len(r) == 6}
    details = json.loads((tmp_path / "scores" / "cfg_a" / "details.json").read_text())
    f1 = details["checkpoints"]["final"]["intervals"]["f1"]
    assert standard["cfg_a", "epoch 3 (final)"][4] == f"{f1['value']:.3f} [{f1['low']:.3f}, {f1['high']:.3f}]"
    context = {r[0]: r for r in rows if r[1] == "published (context, not a target)"}
    assert set(context) == {"MuFFIN", "HMamba"}
    assert context["MuFFIN"][4] == "0.680" and "arXiv:2510.04956" in context["MuFFIN"][5]
    assert context["HMamba"][4] == "0.639" and "arXiv:2502.07575" in context["HMamba"][5]
    assert "not yet checked" in context["MuFFIN"][5]  # not checked against the paper's text


def _dvc_outputs(kind: str) -> list[tuple[str, dict]]:
    """(path, its settings) of every `kind` (plots, metrics, outs) entry of dvc.yaml, with the paths
    and each config name of params.yaml substituted as DVC does."""
    import yaml

    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    paths = next(v["paths"] for v in doc["vars"] if "paths" in v)
    configs = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["configs"]
    out = []
    for stage in doc["stages"].values():
        body, keys = (stage["do"], list(configs)) if "foreach" in stage else (stage, [None])
        for entry in body.get(kind, []):
            path, settings = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
            for key in keys:
                resolved = re.sub(r"\$\{paths\.(\w+)\}", lambda m: paths[m.group(1)], path)
                out.append((resolved.replace("${key}", key or ""), settings or {}))
    return out


def test_every_plot_is_drawn_from_git_and_the_default_metrics_are_the_headline():
    """`dvc plots show` on a fresh clone (no DVC remote) renders only what git holds: every plot's
    data is declared cache: false and is not ignored by git. The default metrics (`dvc metrics show`,
    `dvc exp show`) are only metrics/<config>/{headline,verdict}.json; the detail is a plain output."""
    import subprocess

    import yaml

    configs = list(yaml.safe_load((ROOT / "params.yaml").read_text())["configs"])
    plots = _dvc_outputs("plots")
    assert len(plots) == 3 * len(configs) + 2  # per config: training curves, APA scatter, Figure 5; vs paper, loss
    for path, settings in plots:
        assert settings.get("cache") is False, path
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert ignored.returncode == 1, f"{path} is ignored by git: a fresh clone could not draw it"
    metrics = sorted(path for path, _ in _dvc_outputs("metrics"))
    assert metrics == sorted(f"metrics/{c}/{f}.json" for c in configs for f in ("headline", "verdict"))
    outs = dict(_dvc_outputs("outs"))
    for kept in ("metrics/paper_r64.json", "dvclive/paper_r64/metrics.json"):
        assert outs[kept].get("cache") is False, kept  # in git, not a default metric
