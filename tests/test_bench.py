"""The benchmark harness at smoke scale: it runs every CPU benchmark (not e2e) and reports every
figure with its value, baseline, ratio and bar. Benchmarks, not tests: no time or ratio is
asserted, only that each figure is there and well formed."""

import json
import subprocess
import sys
from pathlib import Path

from pronounce.bench import FIGURES

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("decode", "materialize", "collator", "evaluate", "dvc", "gpu")


def test_quick_bench_reports_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pronounce.bench", "--quick", "--repeats", "1", "--only", ",".join(GROUPS),
         "--out", str(out), "--workdir", str(tmp_path / "work")],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
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
