"""What the benchmarks run on, built under their scratch folder: a full-scale corpus in the
release layout made from the bundled clips, a small prepared workspace (the tiny model and the
bundled corpus decoded and materialized), and a clean copy of the project for DVC's own cost and
the end-to-end `dvc repro`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pronounce.data.corpus import KALDI_FILES, SPLITS, kaldi_map

from . import BUNDLED, ROOT
from .profiles import top_entries


def build_scaled_corpus(dst: Path, n_utts: int) -> dict:
    """A corpus of `n_utts` utterances in the speechocean762 release layout: the bundled clips
    replicated round-robin under new utterance and speaker ids (each copy keeps its split, labels
    and audio). The WAVs are hard links to one private copy of each bundled file: the decoder reads
    them as distinct files."""
    shutil.rmtree(dst, ignore_errors=True)
    originals = []  # (split, utt, tables of its split), in split then id order
    for split in SPLITS:
        tables = {f: kaldi_map(BUNDLED / split / f) for f in KALDI_FILES}
        originals += [(split, utt, tables) for utt in sorted(tables["wav.scp"])]
    scores = json.loads((BUNDLED / "resource" / "scores.json").read_text(encoding="utf-8"))
    (dst / ".clips").mkdir(parents=True)
    out = {s: {f: [] for f in KALDI_FILES} for s in SPLITS}
    new_scores, speakers, paths, audio_bytes = {}, set(), [], 0
    for i in range(n_utts):
        split, old, t = originals[i % len(originals)]
        rep, spk = f"{i // len(originals):04d}", t["utt2spk"][old]
        utt, clip, rel = rep + old, dst / ".clips" / f"{old}.WAV", f"WAVE/SPEAKER{rep}{spk}/{rep}{old}.WAV"
        if not clip.exists():
            shutil.copyfile(BUNDLED / t["wav.scp"][old], clip)
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(clip, dst / rel)
        audio_bytes += clip.stat().st_size
        o = out[split]
        o["wav.scp"].append(f"{utt}\t{rel}")
        o["text"].append(f"{utt}\t{t['text'][old]}")
        o["utt2spk"].append(f"{utt}\t{rep}{spk}")
        if (split, rep + spk) not in speakers:
            speakers.add((split, rep + spk))
            o["spk2age"].append(f"{rep}{spk}\t{t['spk2age'][spk]}")
            o["spk2gender"].append(f"{rep}{spk}\t{t['spk2gender'][spk]}")
        new_scores[utt] = scores[old]
        paths.append((SPLITS.index(split), utt, str(dst / rel)))
    for split, tables in out.items():
        (dst / split).mkdir()
        for name, lines in tables.items():
            (dst / split / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (dst / "resource").mkdir()
    (dst / "resource" / "scores.json").write_text(json.dumps(new_scores, indent=2, sort_keys=True), encoding="utf-8")
    # The paths in the decoder's order (split, then utterance id): what the floor and naive read.
    (dst / ".paths.txt").write_text("".join(p + "\n" for *_, p in sorted(paths)), encoding="utf-8")
    return {"corpus": str(dst), "paths_file": str(dst / ".paths.txt"), "utterances": n_utts,
            "wav_bytes": audio_bytes}


def prepare_small(ws) -> dict:
    """The tiny model, and the bundled corpus decoded and materialized, under `ws` (built once)."""
    from pronounce.data.decode import run_decode
    from pronounce.model.base import run_base
    from pronounce.model.processor import load_processor
    from pronounce.task.materialize import run_materialize

    base, decoded, materialized = Path(ws) / "base", Path(ws) / "decoded", Path(ws) / "materialized"
    if not (materialized / "summary.json").is_file():
        run_base("builtin:tiny", None, 1234, base)
        run_decode(str(BUNDLED), decoded, 30.0, 0.0, progress=False)
        run_materialize(decoded, materialized, load_processor(base).audio_token, progress=False)
    return {"base": str(base), "decoded": str(decoded), "materialized": str(materialized)}


# --------------------------------------------------------------------------- DVC


def dvc_env(repo, extra=None) -> dict:
    """DVC in a copy: this interpreter's dvc first on PATH, the copy's own package, offline."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(Path(repo) / "src"), "DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATE_CHECK": "1",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@localhost", **(extra or {})}


def run(cmd, repo, timeout=None) -> tuple[float, str]:
    """Seconds and output of a command in `repo`; a failure raises with the output's tail."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=dvc_env(repo), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}) in {repo}:\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc.stdout + proc.stderr


def noop_repro(repo, target: str) -> tuple[float, bool]:
    """Seconds of a `dvc repro` with nothing to do, and whether it really did nothing."""
    seconds, text = run(["dvc", "repro", target], repo)
    return seconds, "Running stage" not in text


def profile_noop_repro(repo, target: str, out) -> list[dict]:
    dvc = shutil.which("dvc", path=dvc_env(repo)["PATH"])
    run([sys.executable, "-m", "cProfile", "-o", str(out), dvc, "repro", target], repo)
    return top_entries(str(out))


# The `python` first on PATH in the end-to-end run: runs the real interpreter and logs each stage
# command's wall time, CPU time and peak RSS (wait4: the stage and any process it waited for).
_WRAPPER = '''#!{python}
import json, os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen([{python!r}] + sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
with open(os.environ["BENCH_STAGE_LOG"], "a", encoding="utf-8") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "seconds": time.perf_counter() - start,
                        "cpu_seconds": usage.ru_utime + usage.ru_stime,
                        "peak_rss_bytes": usage.ru_maxrss * 1024, "rc": os.waitstatus_to_exitcode(status)}}) + "\\n")
sys.exit(os.waitstatus_to_exitcode(status))
'''


def stage_name(argv: list[str]) -> str:
    """`stages/train.py paper_r64 --base ...` -> `train@paper_r64`; `stages/decode.py --out ...` -> `decode`."""
    script = [a for a in argv if a.endswith(".py")]
    if not script:
        return " ".join(argv)
    rest = argv[argv.index(script[0]) + 1:]
    return Path(script[0]).stem + (f"@{rest[0]}" if rest and not rest[0].startswith("-") else "")


def clean_copy(dst: Path) -> Path:
    """The project as a fresh clone has it: the files git would commit (tracked, and untracked
    but not ignored) of the working tree, no DVC cache, no outputs, one commit (DVCLive needs one)."""
    shutil.rmtree(dst, ignore_errors=True)
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    run(["git", "init", "-q"], dst)
    if not (dst / ".dvc" / "config").is_file():
        run(["dvc", "init", "-q"], dst)
    run(["dvc", "config", "core.analytics", "false"], dst)
    run(["git", "add", "-A"], dst)
    run(["git", "commit", "-q", "--no-verify", "-m", "benchmark copy"], dst)
    return dst


def end_to_end(ws: Path, timeout: int, repo: Path | None = None, tag: str = "e2e") -> dict:
    """The default `dvc repro` of a clean copy (`repo`, else one made of the working tree): its wall
    time, and each stage's wall time, CPU time (user + system) and peak RSS (wait4's ru_maxrss,
    which starts at the small wrapper's own, ~10 MiB). Killed, stages and all, after `timeout` seconds."""
    repo = repo or clean_copy(ws / "e2e-repo")
    wrap, log = ws / "e2e-bin", ws / f"{tag}-stages.jsonl"
    wrap.mkdir(exist_ok=True)
    (wrap / "python").write_text(_WRAPPER.format(python=sys.executable), encoding="utf-8")
    (wrap / "python").chmod(0o755)
    log.unlink(missing_ok=True)
    env = dvc_env(repo, {"BENCH_STAGE_LOG": str(log)})
    env["PATH"] = f"{wrap}{os.pathsep}{env['PATH']}"
    start = time.perf_counter()
    with open(ws / f"{tag}-dvc.log", "w+", encoding="utf-8") as out:
        # Its own session, so that on a timeout the stage processes go down with dvc.
        proc = subprocess.Popen(["dvc", "repro"], cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = "timeout"
        seconds = time.perf_counter() - start
        out.seek(0)
        tail = out.read()[-2000:] if rc != 0 else ""
    stages = [json.loads(line) for line in (log.read_text(encoding="utf-8").splitlines() if log.is_file() else [])]
    return {"seconds": seconds, "rc": rc, "tail": tail,
            "stages": [{"stage": stage_name(s["argv"]), "seconds": round(s["seconds"], 2),
                        "cpu_seconds": round(s.get("cpu_seconds", 0.0), 2),
                        "peak_rss_mib": round(s["peak_rss_bytes"] / 2**20, 1), "rc": s["rc"]} for s in stages]}
