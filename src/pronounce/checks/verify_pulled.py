"""A run's numbers re-derived from its predictions alone, on any CPU (no model, no GPU):

    python -m pronounce.checks.verify_pulled --pull   # dvc pull decode evaluate_base evaluate, then the check
    python -m pronounce.checks.verify_pulled          # the check alone, on what is already pulled

In a clone of a published run whose `dvc pull` brought its predictions, it runs the `score` and
`report` stages' own functions (pronounce.scoring.score.run_score, pronounce.scoring.report.run_report; the
stage scripts hold no logic) with this checkout's params, on the paths dvc.yaml gives them,
into a temporary folder, and requires the checked-out `metrics/<config>.json` of every config
(and its headline, `metrics/<config>/{headline,verdict}.json`) and `metrics/report.md`
byte-identical to what they give. It prints each difference by metric
(`paper_r64: epochs.3.accuracy_pcc: committed 0.51, recomputed 0.49`) and exits 1 on any, 2
when an input is missing. Nothing in the workspace is written.
"""

from __future__ import annotations

import argparse
import difflib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from ..core.errors import PipelineError
from ..core.params import load_params
from ..scoring.report import run_report
from ..scoring.score import run_score

# What a reader pulls: the test labels (decode's output) and every config's predictions; no model.
PULL_TARGETS = ("decode", "evaluate_base", "evaluate")
PULL_HINT = "dvc pull " + " ".join(PULL_TARGETS)


class VerifyError(PipelineError):
    """An input the recomputation needs is missing."""


def stage_paths(dvc_yaml="dvc.yaml") -> dict[str, str]:
    """dvc.yaml's `paths` (written once there, passed to every stage's cmd)."""
    doc = yaml.safe_load(Path(dvc_yaml).read_text(encoding="utf-8"))
    for entry in doc.get("vars", []):
        if isinstance(entry, dict) and "paths" in entry:
            return entry["paths"]
    raise VerifyError(f"{dvc_yaml} has no `paths` in its vars: run from the repository root")


def flatten(obj, prefix="") -> dict:
    """Nested JSON as {"epochs.3.accuracy_pcc": value}; lists and scalars are leaves."""
    if isinstance(obj, dict) and obj:
        out = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def metric_differences(committed: dict, recomputed: dict) -> list[str]:
    """One line per metric whose committed and recomputed values differ (or that one side lacks)."""
    a, b = flatten(committed), flatten(recomputed)

    def shown(d, key):
        return json.dumps(d[key]) if key in d else "missing"

    return [f"{key}: committed {shown(a, key)}, recomputed {shown(b, key)}"
            for key in sorted(set(a) | set(b)) if key not in a or key not in b or a[key] != b[key]]


def compare_metrics(name: str, committed_path: Path, recomputed_path: Path) -> list[str]:
    """Differences of one config's metrics file, by metric; the bytes too (same values can be
    written differently, and the check is byte-identity)."""
    if not committed_path.is_file():
        return [f"{name}: {committed_path} is missing (the run committed no metrics for it)"]
    committed, recomputed = committed_path.read_bytes(), recomputed_path.read_bytes()
    if committed == recomputed:
        return []
    try:
        diffs = metric_differences(json.loads(committed), json.loads(recomputed))
    except ValueError as e:
        return [f"{name}: {committed_path} is not valid JSON ({e})"]
    return [f"{name}: {d}" for d in diffs] or [f"{name}: same values, different bytes (formatting)"]


def compare_text(name: str, committed_path: Path, recomputed_path: Path, max_lines=40) -> list[str]:
    if not committed_path.is_file():
        return [f"{name}: {committed_path} is missing"]
    if committed_path.read_bytes() == recomputed_path.read_bytes():
        return []
    a = committed_path.read_text(encoding="utf-8").splitlines()
    b = recomputed_path.read_text(encoding="utf-8").splitlines()
    lines = list(difflib.unified_diff(a, b, "committed", "recomputed", lineterm="", n=0))
    shown = lines[:max_lines] + ([f"... {len(lines) - max_lines} more diff lines"] if len(lines) > max_lines else [])
    return [f"{name}: differs:\n" + "\n".join(f"    {line}" for line in shown)]


def check_inputs(paths: dict, configs) -> None:
    decoded_test = Path(paths["decoded"]) / "test.arrow"
    wanted = [decoded_test] + [Path(paths["predictions"]) / c for c in ("base", *configs)]
    missing = [str(p) for p in wanted if not p.exists()]
    if missing:
        raise VerifyError(f"missing {', '.join(missing)}: pull the run's predictions and test labels first "
                          f"(`{PULL_HINT}`; no model is needed)")


def verify(work_dir, log=print) -> list[str]:
    """Recompute score and report into `work_dir`; the differences from the checked-out files."""
    params = load_params()
    paths = stage_paths()
    configs = list(params.configs)
    check_inputs(paths, configs)
    work = Path(work_dir)
    metrics_dir, scores_dir = Path(paths["metrics"]), work / "scores"
    differences = []
    for name in configs:
        recomputed = work / "metrics" / f"{name}.json"
        run_score(params.score_job(name), paths["decoded"], Path(paths["predictions"]) / name,
                  Path(paths["predictions"]) / "base", recomputed, scores_dir / name, log=None,
                  headline_dir=work / "metrics" / name)
        differences += compare_metrics(name, metrics_dir / f"{name}.json", recomputed)
        for part in ("headline.json", "verdict.json"):
            differences += compare_metrics(f"{name}/{part}", metrics_dir / name / part, work / "metrics" / name / part)
    report = work / "metrics" / "report.md"
    run_report(params.report_job(), scores_dir, paths["live"], report, work / "plots", log=None)
    differences += compare_text("report.md", metrics_dir / "report.md", report)
    if log:
        log(f"verify-pulled: {len(configs)} config(s) scored from {paths['predictions']}/ and the report "
            f"rebuilt: {'IDENTICAL' if not differences else 'DIFFERENT'}")
    return differences


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pull", action="store_true",
                    help=f"first `{PULL_HINT}` from the default remote (the test labels and the predictions)")
    args = ap.parse_args(argv)
    if args.pull and subprocess.run(["dvc", "pull", *PULL_TARGETS]).returncode != 0:
        print(f"error: `{PULL_HINT}` failed (is a default remote configured? docs/reproducibility.md, \"Share a run\")",
              file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="verify-pulled-") as tmp:
            differences = verify(tmp)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for d in differences:
        print(f"verify-pulled: DIFFERS {d}", file=sys.stderr)
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
