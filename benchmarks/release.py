"""The `release` group: what a user and a developer wait for, against the previous release measured
in the same run. Opt-in (`--release`, or `--only release`): it runs the default pipeline and the
test suite twice, tens of minutes.

    python -m benchmarks --only release [--baseline REF] [--repeats N] [--quick]

Two copies of the project in the scratch folder: the working tree as a fresh clone has it
(workspace.clean_copy) and the commit REF (`git archive`, default HEAD~1: the previous commit).
Each repeat, alternating which goes first: the default `dvc repro` of a clean copy of each (every
stage's wall time and CPU time, from wait4), then the test suite in each (`python -m pytest -q`,
each copy with its own pyproject's options and its own package on PYTHONPATH; `--quick`: the quick
loop `-m "not slow"` instead). Every figure is this tree's over REF's: seconds and the ratio. The
CPU seconds are kept beside the wall times: on a shared machine they move less.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import ROOT, workspace
from .report import figure

FIGURES = ("release.dvc_repro", "release.dvc_repro_cpu", "release.suite", "release.suite_cpu")


def commit_copy(dst: Path, ref: str) -> Path:
    """The project at commit `ref` as a fresh clone has it (its tracked files), one commit of its own."""
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive.stdout, check=True)
    workspace.run(["git", "init", "-q"], dst)
    workspace.run(["git", "add", "-A"], dst)
    workspace.run(["git", "commit", "-q", "--no-verify", "-m", f"benchmark copy of {ref}"], dst)
    return dst


def resolve(ref: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def run_suite(repo: Path, args: list[str], timeout: int) -> dict:
    """`python -m pytest -q ARGS` in `repo`: wall and CPU seconds (its whole process tree, as wait4
    reports it), exit code and pytest's summary line. setup.sh's offline plots page is written
    first (a test checks it), with the copy's own package."""
    env = workspace.dvc_env(repo)  # the copy's own src/ first on PYTHONPATH
    for module in ("pronounce.scoring.plots", "pronounce.plots"):  # this layout, the one before it
        if (repo / "src" / (module.replace(".", "/") + ".py")).is_file():  # never the installed package's
            subprocess.run([sys.executable, "-m", module, "write"], cwd=repo, env=env, capture_output=True, check=True)
            break
    log = repo.parent / f"{repo.name}-pytest.log"
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=repo,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = start + timeout
        while (done := os.wait4(proc.pid, os.WNOHANG))[0] == 0:
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                done = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
    seconds = time.perf_counter() - start
    _, status, usage = done
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    summary = next((line.strip("= ") for line in reversed(lines) if " in " in line and ("passed" in line or "failed" in line)),
                   lines[-1] if lines else "")
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "rc": os.waitstatus_to_exitcode(status), "summary": summary}


def g_release(b) -> dict:
    ref = getattr(b.args, "baseline", "") or "HEAD~1"
    commit = resolve(ref)
    suite_args = ["-m", "not slow"] if b.quick else []
    suite_name = "the quick loop (`pytest -m \"not slow\"`)" if b.quick else "the whole suite (`python -m pytest -q`)"
    runs = {"current": [], "baseline": []}
    suites = {"current": [], "baseline": []}
    for r in range(b.repeats):
        order = ("baseline", "current") if r % 2 == 0 else ("current", "baseline")
        for side in order:  # a fresh copy per run: dvc repro from nothing
            dst = b.ws / f"release-{side}"
            repo = workspace.clean_copy(dst) if side == "current" else commit_copy(dst, commit)
            runs[side].append(workspace.end_to_end(b.ws, timeout=3 * 3600, repo=repo, tag=side))
        for side in order:
            suites[side].append(run_suite(b.ws / f"release-{side}", suite_args, timeout=3 * 3600))

    def secs(rs, key="seconds"):
        return [r[key] for r in rs]
    base_what = f"the same at {commit} ({ref})"
    figs = {
        "release.dvc_repro": figure("the default `dvc repro` of a clean copy, this tree", "s", secs(runs["current"]),
                                    base_what, secs(runs["baseline"]), None, rc=[r["rc"] for r in runs["current"]],
                                    baseline_rc=[r["rc"] for r in runs["baseline"]], baseline_ref=commit),
        "release.dvc_repro_cpu": figure("its CPU seconds (every stage process, user + system)", "s",
                                        [sum(s["cpu_seconds"] for s in r["stages"]) for r in runs["current"]],
                                        base_what, [sum(s["cpu_seconds"] for s in r["stages"]) for r in runs["baseline"]],
                                        None),
        "release.suite": figure(f"{suite_name} in that copy, this tree", "s", secs(suites["current"]), base_what,
                                secs(suites["baseline"]), None, summary=suites["current"][-1]["summary"],
                                baseline_summary=suites["baseline"][-1]["summary"],
                                rc=[s["rc"] for s in suites["current"]], baseline_rc=[s["rc"] for s in suites["baseline"]]),
        "release.suite_cpu": figure("its CPU seconds (pytest and every process it waited for)", "s",
                                    secs(suites["current"], "cpu_seconds"), base_what,
                                    secs(suites["baseline"], "cpu_seconds"), None),
    }
    stages = list(dict.fromkeys(s["stage"] for r in runs["current"] + runs["baseline"] for s in r["stages"]))
    for stage in stages:
        def per_run(side, key):
            return [next((s[key] for s in r["stages"] if s["stage"] == stage), None) for r in runs[side]]
        value = per_run("current", "seconds")
        if None in value:  # a stage of REF's pipeline only
            figs[f"release.stage.{stage}"] = figure(f"stage {stage}: not in this tree's pipeline", "s", [0.0],
                                                    base_what, per_run("baseline", "seconds"), None)
            continue
        figs[f"release.stage.{stage}"] = figure(
            f"stage {stage} of the default dvc repro (wall)", "s", value, base_what, per_run("baseline", "seconds"),
            None, cpu_seconds=per_run("current", "cpu_seconds"), baseline_cpu_seconds=per_run("baseline", "cpu_seconds"))
    return figs
