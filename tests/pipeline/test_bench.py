"""The benchmarks (benchmarks/, outside the installed package) at smoke scale: every CPU benchmark
(not e2e) runs and reports every figure with its value, baseline, ratio and bar. Benchmarks, not
tests: no time or ratio is asserted, only that each figure is there and well formed. The GPU
bench's pure parts (the real configuration, parameter and FLOP counts) are tested here exactly; its
code path runs on a CPU with the tiny model, and the full-size run only where CUDA is (skipped
otherwise, with the reason)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from setuptools import find_packages

from benchmarks.gpu import attention_flops, gpu_figures, make_batch, model_sizes, real_config, train_flops
from benchmarks.groups import FIGURES
from benchmarks.report import bar, figure, markdown

ROOT = Path(__file__).resolve().parents[2]
GROUPS = ("decode", "materialize", "collator", "evaluate", "dvc", "gpu")


def test_the_benchmarks_are_not_installed_with_the_package():
    """setuptools packages what it finds under src/ (the wheel's contents); the benchmarks live
    beside it, and no module of the package imports them."""
    assert '[tool.setuptools.packages.find]\nwhere = ["src"]' in (ROOT / "pyproject.toml").read_text()
    packages = find_packages(str(ROOT / "src"))
    assert "pronounce" in packages and not any("bench" in p for p in packages), packages
    imports = re.compile(r"^\s*(from|import)\s+(benchmarks|pronounce\.bench)\b", re.M)
    assert [p for p in (ROOT / "src").rglob("*.py") if imports.search(p.read_text(encoding="utf-8"))] == []


def test_a_figure_is_the_median_of_paired_runs_against_its_bar():
    fig = figure("ours", "x/s", [10.0, 30.0, 20.0], "theirs", [5.0, 10.0, 20.0], bar("ratio", ">=", 2.5, "2.5x"), n=3)
    assert (fig["value"], fig["baseline"], fig["ratio"], fig["delta"]) == (20.0, 10.0, 2.0, 5.0)
    assert fig["met"] is False and fig["miss"] == "ratio 2 < 2.5: 1.25x short" and fig["n"] == 3
    flat = figure("4x", "MiB", [115.0], "1x", [100.0], bar("ratio", "<=", 1.10, "flat"))
    assert flat["met"] is False and flat["miss"] == "ratio 1.15 > 1.1: over by 0.05 (1.50x the allowed growth)"
    assert figure("v", "s", [1.0], "none", [None], None)["ratio"] is None
    result = {"command": "python -m benchmarks", "settings": {"repeats": 1, "scale": 5}, "seconds": 1.0,
              "host": {"cpus": 2, "load_start": [0], "load_end": [0]}, "figures": {"a.b": fig}, "errors": {}}
    md = markdown(result)
    assert "| a.b | 20 x/s | 10 x/s | 2.000 | 2.5x | **no** |" in md and "**a.b**: ratio 2 < 2.5: 1.25x short." in md


def test_an_unknown_group_is_a_one_line_error_naming_the_choices(capsys):
    from benchmarks.__main__ import parse_args

    assert parse_args(["--only", "collator,decode"]).groups == ["decode", "collator"]  # in the report's order
    assert parse_args(["--e2e"]).groups == [g for g in FIGURES if g != "release"]
    assert parse_args(["--e2e", "--release"]).groups == list(FIGURES)
    assert parse_args([]).groups == [g for g in FIGURES if g not in ("e2e", "release")]
    with pytest.raises(SystemExit, match="2"):
        parse_args(["--only", "decode,gpus"])
    assert "--only: unknown group(s) gpus; choose from decode, materialize," in capsys.readouterr().err


@pytest.mark.slow  # every CPU benchmark at smoke scale: about 1.5 minutes on 2 cores
def test_quick_bench_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--repeats", "1", "--only", ",".join(GROUPS),
         "--out", str(out), "--workdir", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["errors"] == {}
    assert result["settings"]["repeats"] == 1 and result["settings"]["quick"]

    expected = [name for group in GROUPS for name in FIGURES[group]]
    assert list(result["figures"]) == expected
    for name, fig in result["figures"].items():
        for key in ("value", "baseline", "ratio", "bar", "met"):
            assert key in fig, (name, key)
        if "skipped" in fig:  # only the GPU figures, and only without CUDA
            assert name.startswith("gpu.")
            continue
        assert isinstance(fig["value"], (int, float)), name
        assert isinstance(fig["baseline"], (int, float)), name
        assert isinstance(fig["ratio"], (int, float)), name
        assert fig["unit"] and fig["what"] and fig["baseline_what"], name
        assert len(fig["runs"]["value"]) == len(fig["runs"]["baseline"]) == 1, name
        if fig["bar"] is not None:
            assert set(fig["bar"]) >= {"on", "op", "target", "text"}, name
            assert isinstance(fig["met"], bool), name
            if not fig["met"]:
                assert fig["miss"], name
        else:
            assert fig["met"] is None, name

    md = out.with_suffix(".md").read_text()
    assert "| figure | value | baseline | ratio | bar | met |" in md
    for name in expected:
        assert f"| {name} |" in md


# ---------------------------------------------------------------- the GPU figures, without a GPU

PAPER_LORA = {"r": 64, "alpha": 128, "dropout": 0.05,
              "target_modules": r"model\.layers\.\d+\.(self_attn\.(qkv|o)_proj|mlp\.(gate_up|down)_proj)"}


def test_the_bench_builds_the_real_configuration_not_the_class_defaults():
    from transformers import Phi4MultimodalConfig

    real, default = real_config(), Phi4MultimodalConfig()
    assert (real.num_attention_heads, real.num_key_value_heads, real.num_hidden_layers) == (24, 8, 32)
    assert real.tie_word_embeddings and real.rope_parameters["rope_type"] == "longrope"
    assert real.vocab_size == 200064 and real.audio_config.audio_token_id == 200011
    assert default.num_attention_heads == 32 and not default.tie_word_embeddings  # what the bench used to build


def test_model_sizes_of_the_real_model_on_meta():
    sizes = model_sizes(real_config(), PAPER_LORA)
    assert sizes["total_params"] == 4_743_988_032  # the published count (tied embeddings)
    assert sizes["lm_head_params"] == 0 and sizes["tied_lm_head"]
    assert sizes["lora_modules"] == 128 and sizes["lora_params"] == 92_274_688
    assert model_sizes(real_config(), {**PAPER_LORA, "r": 320})["lora_params"] == 461_373_440
    # 32 layers of attention (3072 -> 3072 + 2 x 1024 kv, 3072 -> 3072) and MLP (3072 -> 2 x 8192, 8192 -> 3072),
    # two RMSNorms each, and the final norm
    layer = 3072 * (3072 + 2 * 1024) + 3072 * 3072 + 3072 * 2 * 8192 + 8192 * 3072 + 2 * 3072
    assert sizes["text_params"] == 32 * layer + 3072
    assert sizes["lm_head_matmul_params"] == 3072 * 200064


def test_train_flops_of_a_lora_step_on_a_frozen_base():
    config = real_config()
    sizes = model_sizes(config, PAPER_LORA)
    f = train_flops(config, sizes, [700, 760], label_tokens=60, audio_tokens=400)
    t = f["terms"]
    assert t["text_4n"] == 4 * sizes["text_params"] * 1460
    assert t["lora_6n"] == 6 * 92_274_688 * 1460
    assert attention_flops(config, [700, 760]) == 2 * (700**2 + 760**2) * 3072 * 32
    assert t["attention"] == 3 * attention_flops(config, [700, 760])
    assert t["lm_head"] == 4 * 3072 * 200064 * 60  # the fused head: labelled positions only, frozen weight
    assert t["audio_forward"] == 2 * sizes["audio_params"] * 400
    assert f["model_flops"] == sum(t.values())
    assert f["six_n_flops"] == 6 * sizes["flops_params"] * 1460
    # a frozen base does about two thirds of the dense-training convention's work
    assert 0.6 < f["model_flops"] / f["six_n_flops"] < 0.8


def test_without_cuda_the_gpu_bench_is_skipped_with_its_reason_and_still_counts():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the full bench runs in test_the_gpu_bench_on_cuda")
    r = gpu_figures({})
    assert r["skipped"] == "no CUDA device" and r["model"]["total_params"] == 4_743_988_032


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from pronounce.model.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_the_fused_loss_is_the_plain_loss(tiny_dir):
    """The bench trains through trl's fused LM head as SFTTrainer does: the same loss as the model's own."""
    from transformers import Phi4MultimodalConfig, Phi4MultimodalForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    config = Phi4MultimodalConfig.from_pretrained(tiny_dir)
    model = Phi4MultimodalForCausalLM.from_pretrained(tiny_dir).eval()
    a = {"batch_size": 2, "apa_prompt_tokens": 20, "mdd_prompt_tokens": 10, "apa_answer_tokens": 5, "mdd_answer_tokens": 7}
    batch = make_batch(config, a, torch.device("cpu"), torch.float32, for_generation=False)
    plain = model(**batch).loss
    add_fused_lm_head(model)
    assert torch.allclose(model(**batch, fused_lm_head=True).loss, plain, rtol=1e-5)


def test_the_gpu_bench_code_path_runs_on_a_cpu_with_the_tiny_model(tiny_dir):
    a = {"device": "cpu", "config_dir": str(tiny_dir), "batch_size": 2, "steps": 1, "warmup": 0, "gen_tokens": 2,
         "gen_single": 1, "apa_prompt_tokens": 30, "mdd_prompt_tokens": 10, "gradient_checkpointing": False}
    r = gpu_figures(a)
    t, g = r["train"], r["generate"]
    assert r["model"]["lora_modules"] == 8 and t["flops"]["tokens"] == t["tokens_per_step"] > 0
    assert t["model_flops_per_s"] > 0 and t["mfu"] is None  # no peak is known for a CPU
    assert t["plain_loss"]["tokens_per_s"] > 0 and t["tokens_per_s"] > 0
    assert g["batched_tokens_per_s"] > 0 and g["single_tokens_per_s"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the full-size bench needs one GPU (~2 min)")
def test_the_gpu_bench_on_cuda():
    r = gpu_figures({"steps": 3})
    t = r["train"]
    assert r["model"]["total_params"] == 4_743_988_032
    assert 0 < t["mfu"] < t["util_6n"] < 1  # above 1 would mean the FLOPs are miscounted
    assert t["peak_memory_bytes"] < r["memory_total_bytes"]
    assert t["plain_loss"]["step_seconds"] > 0 and r["generate"]["batched_tokens_per_s"] > 0


def test_handwritten_jsonindex_reads_what_json_load_reads(capsys):
    """benchmarks/handwritten.py at smoke scale: pronounce.data.jsonindex (and ijson, where installed)
    against json.load, each in a fresh process; every variant fetches the same entries."""
    from benchmarks.handwritten import main

    assert main(["--only", "jsonindex", "--repeats", "1", "--scale", "40"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| scores.json")]
    assert {(r[0], r[1]) for r in rows} >= {("| scores.json, 40 entries", "index"), ("| scores.json, 160 entries", "index")}
    assert all(r[-1] == "True |" for r in rows), rows


def test_the_release_group_copies_a_commit_and_times_a_suite(tmp_path):
    """benchmarks.release's parts: a commit's tracked files as a fresh repository, and a test
    suite's wall and CPU time, exit code and summary line (here a one-test suite of its own)."""
    from benchmarks.release import commit_copy, resolve, run_suite

    copy = commit_copy(tmp_path / "copy", "HEAD")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    copied = subprocess.run(["git", "ls-files"], cwd=copy, capture_output=True, text=True, check=True).stdout.split()
    committed = subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.split()
    assert copied == sorted(committed) and set(copied) <= set(tracked) | set(committed)
    assert not (copy / ".venv").exists() and resolve("HEAD") != ""

    suite = tmp_path / "suite"
    (suite / "tests").mkdir(parents=True)
    (suite / "pyproject.toml").write_text("[tool.pytest.ini_options]\ntestpaths = ['tests']\n")
    (suite / "tests" / "test_one.py").write_text("def test_one():\n    assert sum(range(10**6)) > 0\n")
    got = run_suite(suite, [], timeout=300)
    assert got["rc"] == 0 and "1 passed" in got["summary"], got
    assert got["seconds"] > 0 and got["cpu_seconds"] > 0
    (suite / "tests" / "test_two.py").write_text("def test_two():\n    assert False\n")
    failed = run_suite(suite, [], timeout=300)
    assert failed["rc"] == 1 and "1 failed" in failed["summary"], failed
