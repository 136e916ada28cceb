"""The GitHub workflow (.github/workflows/ci.yml): valid by actionlint, and only a caller of .ci/run
and .ci/verify-pulled, the scripts that hold every step (so CI cannot drift from them)."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT

WORKFLOW = ROOT / ".github/workflows/ci.yml"


def actionlint(*paths) -> subprocess.CompletedProcess:
    exe = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert exe, "actionlint is missing: ./setup.sh installs it (the dev extra)"
    return subprocess.run([exe, "-no-color", *map(str, paths)], cwd=ROOT, capture_output=True, text=True)


def test_workflow_passes_actionlint():
    linted = actionlint(WORKFLOW)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path):
    """The linter does lint: a secret read in a job's `if` (the mistake the `remote` job avoids)."""
    guard = "if: needs.remote.outputs.configured == 'true'"
    assert guard in WORKFLOW.read_text()
    path = tmp_path / ".github/workflows/ci.yml"
    path.parent.mkdir(parents=True)
    path.write_text(WORKFLOW.read_text().replace(guard, "if: secrets.DVC_REMOTE_URL != ''"))
    linted = actionlint(path)
    assert linted.returncode == 1, linted.stdout + linted.stderr
    assert 'context "secrets" is not allowed here' in linted.stdout and linted.stdout.count("^~") == 1


def run_steps(job: str) -> list[str]:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"][job]["steps"]
    return [s["run"].strip() for s in steps if "run" in s]


def test_workflow_only_calls_the_ci_scripts():
    assert run_steps("run") == ["bash .ci/run"]
    assert run_steps("verify-pulled") == ["bash .ci/verify-pulled"]
    for script in (".ci/run", ".ci/verify-pulled"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is executable"
    pip_cache = [s.get("with", {}).get("cache") for s in yaml.safe_load(WORKFLOW.read_text())["jobs"]["run"]["steps"]]
    assert "pip" in pip_cache
