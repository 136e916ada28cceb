"""DVC's own cost (a no-op `dvc repro` against `dvc version`) and the end-to-end `dvc repro`
of a clean copy of the project, stage by stage, for `pronounce.bench`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PIPELINE_STAGES = ("decode", "base", "materialize")


def dvc_env(extra=None) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATE_CHECK": "1", "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"})
    env.update(extra or {})
    return env


def repo_env(repo, extra=None) -> dict:
    """The environment of DVC runs in a copy: its stages import the copy's own package."""
    return dvc_env({"PYTHONPATH": str(Path(repo) / "src"), **(extra or {})})


def dvc_exe() -> str:
    exe = Path(sys.executable).parent / "dvc"
    return str(exe) if exe.is_file() else "dvc"


def run(cmd, cwd, env=None, timeout=None, check=True) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env or dvc_env(), capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}) in {cwd}:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc


def _git_dvc_init(repo: Path) -> None:
    run(["git", "init", "-q"], repo)
    if not (repo / ".dvc" / "config").is_file():
        run([dvc_exe(), "init", "-q"], repo)
    run([dvc_exe(), "config", "core.analytics", "false"], repo)


def build_pipeline_copy(dst, stages=PIPELINE_STAGES) -> Path:
    """A repo holding only `stages` of dvc.yaml (their scripts, the package, params.yaml and the
    bundled corpus), reproduced once so that a second `dvc repro` has nothing to do."""
    import yaml

    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    spec["stages"] = {k: v for k, v in spec["stages"].items() if k in stages}
    (dst / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    shutil.copy2(ROOT / "params.yaml", dst / "params.yaml")
    (dst / "stages").mkdir()
    for stage in stages:
        shutil.copy2(ROOT / "stages" / f"{stage}.py", dst / "stages" / f"{stage}.py")
    shutil.copytree(ROOT / "src", dst / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "data" / "speechocean762-mini", dst / "data" / "speechocean762-mini")
    _git_dvc_init(dst)
    run([dvc_exe(), "repro", "-q"], dst, env=repo_env(dst), timeout=1800)
    return dst


def noop_repro(repo) -> tuple[float, bool]:
    """Seconds of a `dvc repro` with nothing to do, and whether it really did nothing."""
    seconds, proc = run([dvc_exe(), "repro"], repo, env=repo_env(repo))
    text = proc.stdout + proc.stderr
    return seconds, "Running stage" not in text


def dvc_version(repo) -> float:
    return run([dvc_exe(), "version"], repo, env=repo_env(repo))[0]


def profile_noop_repro(repo, out) -> list[dict]:
    """cProfile of one no-op `dvc repro`: its top entries by own time."""
    from .proc import top_entries

    run([sys.executable, "-m", "cProfile", "-o", str(out), dvc_exe(), "repro"], repo, env=repo_env(repo))
    return top_entries(str(out))


# --------------------------------------------------------------------------- end to end

_WRAPPER = '''#!{python}
"""`python` for the stages of a benchmarked `dvc repro`: runs the real interpreter and logs
the command's wall time and peak RSS (wait4: the stage and any process it waited for)."""
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen([{python!r}] + sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
with open(os.environ["PRONOUNCE_BENCH_STAGE_LOG"], "a", encoding="utf-8") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "seconds": time.perf_counter() - start,
                        "peak_rss_bytes": usage.ru_maxrss * 1024, "rc": child.returncode}}) + "\\n")
sys.exit(child.returncode)
'''


def stage_name(argv: list[str]) -> str:
    """`stages/train.py paper_r64` -> `train@paper_r64`."""
    script = [a for a in argv if a.endswith(".py")]
    if not script:
        return " ".join(argv)
    rest = argv[argv.index(script[0]) + 1:]
    return Path(script[0]).stem + (f"@{rest[0]}" if rest else "")


def clean_copy(dst) -> Path:
    """The project as a fresh clone would have it: the files git would commit (tracked and
    untracked-but-not-ignored) of the working tree, with no DVC cache and no outputs."""
    dst = Path(dst)
    if dst.exists():
        shutil.rmtree(dst)
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    _git_dvc_init(dst)
    # A clone has a commit (dvclive in the train stage needs a revision to work from).
    run(["git", "add", "-A"], dst)
    run(["git", "commit", "-q", "--no-verify", "-m", "benchmark copy"], dst)
    return dst


def end_to_end(ws, timeout: int) -> dict:
    """The default `dvc repro` of a clean copy: its wall time, and each stage's wall time and
    peak RSS (a logging `python` first on PATH; wait4's ru_maxrss, which starts at that small
    wrapper's own RSS, ~10 MiB). Killed, stages and all, after `timeout` seconds."""
    ws = Path(ws)
    repo = clean_copy(ws / "e2e-repo")
    wrap = ws / "e2e-bin"
    wrap.mkdir(exist_ok=True)
    (wrap / "python").write_text(_WRAPPER.format(python=sys.executable), encoding="utf-8")
    (wrap / "python").chmod(0o755)
    log = ws / "e2e-stages.jsonl"
    log.unlink(missing_ok=True)
    env = repo_env(repo, {"PRONOUNCE_BENCH_STAGE_LOG": str(log)})
    env["PATH"] = f"{wrap}{os.pathsep}{env['PATH']}"
    start = time.perf_counter()
    with open(ws / "e2e-dvc.log", "w+", encoding="utf-8") as out:
        # Its own session, so that on a timeout the stage processes go down with dvc.
        proc = subprocess.Popen([dvc_exe(), "repro"], cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = "timeout"
        seconds = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    stages = []
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            stages.append({"stage": stage_name(entry["argv"]), "seconds": round(entry["seconds"], 2),
                           "peak_rss_mib": round(entry["peak_rss_bytes"] / 2**20, 1), "rc": entry["rc"]})
    return {"seconds": seconds, "rc": rc, "stages": stages, "tail": text[-2000:] if rc != 0 else ""}
