"""The reproducibility check CI runs after `dvc repro` (users run the same way): it tells a real
regression from the last bits of another CPU's arithmetic.

    python -m pronounce.checks.repro_check [--same-machine] [--learnability]

Cross-machine (the default; CI): 1. decode, base and materialize have the committed dvc.lock's
hashes; 2. each config's training loss (dvclive/<config>/plots/metrics/train/loss.tsv) matches the
committed one at every logged step up to LOSS_STEPS, within LOSS_RTOL relative (~800 times the
drift measured across CPU kernels; later steps, and all after training, may differ); 3. what
training learns: tests/pipeline/test_learnability.py (`--learnability` runs it here too). Then
`dvc status` must be clean (corpus_pin.dvc_status). `--same-machine` adds `dvc repro -f` of every
stage, reproducing every hash. Each tier prints what it compared and how far it differed; a
failure exits non-zero with one line naming the stage, config and step. Why: docs/reproducibility.md
"""

import argparse
import json
import subprocess
import sys

import yaml

from ..data.corpus_pin import dvc_status

# Stages reproduced bit for bit on any machine: no floating-point kernel beyond exact
# conversions; the tiny model's draws and statistics are CPU-independent (pronounce.model.portable).
CROSS_MACHINE_STAGES = ("decode", "base", "materialize")
# Training loss: logged steps compared and their tolerance. Measured (docs/reproducibility.md:
# smoke recipe, bundled corpus, paper_r64, against ATEN_CPU_CAPABILITY=avx2 at 1 thread): the
# `default` capability moves the logged loss by at most 1.1e-7 relative over 68 steps; `default`
# with MKL_CBWR=COMPATIBLE (another CPU's matrix products) and 2 threads by 1.2e-7 over the 20
# steps measured. 1e-4 leaves ~800x margin for the drift's growth, while a change of model,
# data, collator or recipe moves the first logged losses by 1e-3 to 1e-1 (tests/training/test_train.py).
LOSS_STEPS = 50
LOSS_RTOL = 1e-4
LOSS_TSV = "plots/metrics/train/loss.tsv"  # under dvclive/<config>/, as DVCLive writes it


def out_hashes(lock: dict) -> dict[str, dict[str, str]]:
    return {
        stage: {o["path"]: o.get("md5") for o in body.get("outs", [])}
        for stage, body in (lock or {}).get("stages", {}).items()
    }


def moved(before: dict, after: dict, stages=None) -> list[str]:
    names = stages if stages is not None else sorted(set(before) | set(after))
    return [
        f"{s}: {path} {before.get(s, {}).get(path)} -> {after.get(s, {}).get(path)}"
        for s in names
        for path in sorted(set(before.get(s, {})) | set(after.get(s, {})))
        if before.get(s, {}).get(path) != after.get(s, {}).get(path)
    ]


def read_curve(text: str) -> dict[int, float]:
    """A DVCLive metric file (`step<TAB>loss` rows under a header) as {step: value}."""
    rows = [line.split("\t") for line in text.splitlines()[1:] if line.strip()]
    return {int(row[0]): float(row[-1]) for row in rows}


def compare_curve(config: str, committed: dict, now: dict, steps: int = LOSS_STEPS, rtol: float = LOSS_RTOL):
    """(summary line, failures): `now` against `committed` at each committed step <= `steps`."""
    checked = sorted(s for s in committed if s <= steps)
    failures = [f"train@{config}: no logged loss at step {s} (committed {committed[s]})" for s in checked if s not in now]
    diffs = {s: abs(now[s] - committed[s]) / max(abs(committed[s]), 1e-12) for s in checked if s in now}
    failures += [f"train@{config}: loss at step {s} is {now[s]:.7g}, committed {committed[s]:.7g}: "
                 f"relative difference {d:.1e} > {rtol:.0e}" for s, d in sorted(diffs.items()) if d > rtol]
    if not checked:
        failures.append(f"train@{config}: the committed curve logs no step <= {steps}")
    later = [abs(now[s] - committed[s]) / max(abs(committed[s]), 1e-12) for s in committed if s > steps and s in now]
    summary = (f"train@{config}: {len(checked)} logged steps up to step {steps}: largest relative difference "
               f"{max(diffs.values(), default=0):.1e} (tolerance {rtol:.0e})"
               + (f"; {len(later)} later steps differ by up to {max(later):.1e} (not compared)" if later else ""))
    return summary, failures


def _git_show(path: str) -> str | None:
    run = subprocess.run(["git", "show", f"HEAD:{path}"], capture_output=True, text=True)
    return run.stdout if run.returncode == 0 else None


def _committed_lock() -> dict:
    text = _git_show("dvc.lock")
    if text is None:
        raise SystemExit("repro-check: no dvc.lock in the HEAD commit to compare with")
    return out_hashes(yaml.safe_load(text))


def _lock_now() -> dict:
    with open("dvc.lock", encoding="utf-8") as f:
        return out_hashes(yaml.safe_load(f))


def _live_dir() -> str:
    with open("dvc.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)["vars"][0]["paths"]["live"]  # the one place the path is written


def check_bytes(committed: dict, now: dict) -> list[str]:
    failures = [f"differs from the committed dvc.lock: {m}" for m in moved(committed, now, CROSS_MACHINE_STAGES)]
    n = sum(len(committed.get(s, {})) for s in CROSS_MACHINE_STAGES)
    print(f"repro-check 1/3 bytes: {n} outputs of {', '.join(CROSS_MACHINE_STAGES)} vs the committed dvc.lock: "
          + ("all equal" if not failures else f"{len(failures)} differ"))
    return failures


def check_training(committed_lock: dict) -> list[str]:
    live = _live_dir()
    configs = sorted(s.split("@", 1)[1] for s in committed_lock if s.startswith("train@"))
    failures = []
    for config in configs:
        path = f"{live}/{config}/{LOSS_TSV}"
        committed = _git_show(path)
        if committed is None:
            print(f"repro-check 2/3 training loss: train@{config}: no committed {path}: nothing to compare")
            continue
        try:
            with open(path, encoding="utf-8") as f:
                now = read_curve(f.read())
        except FileNotFoundError:
            failures.append(f"train@{config}: {path} is missing: run `dvc repro` first")
            continue
        summary, failed = compare_curve(config, read_curve(committed), now)
        print(f"repro-check 2/3 training loss: {summary}")
        failures += failed
    return failures


def check_learnability(run: bool) -> list[str]:
    test = "tests/pipeline/test_learnability.py"
    if not run:
        print(f"repro-check 3/3 what training learns: {test}'s thresholds, asserted by the test suite "
              "(CI runs it before this check; --learnability runs it here)")
        return []
    code = subprocess.run([sys.executable, "-m", "pytest", "-q", test]).returncode
    print(f"repro-check 3/3 what training learns: {test}: {'passed' if code == 0 else 'FAILED'}")
    return [] if code == 0 else [f"{test} failed: the model no longer learns what the clips say"]


def check_forced_rerun(now: dict) -> list[str]:
    subprocess.run(["dvc", "repro", "-f", "-q"], check=True)
    rerun = _lock_now()
    forced = moved(now, rerun)
    print(f"repro-check same machine: dvc repro -f of {len(rerun)} stages: "
          + ("every hash reproduced" if not forced else f"{len(forced)} outputs moved"))
    return [f"not reproduced by dvc repro -f: {m}" for m in forced]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--same-machine", action="store_true",
                    help="also rerun every stage (dvc repro -f) and require every hash reproduced")
    ap.add_argument("--learnability", action="store_true", help="also run tests/pipeline/test_learnability.py (~9 min)")
    args = ap.parse_args(argv)

    committed, now = _committed_lock(), _lock_now()
    failures = check_bytes(committed, now) + check_training(committed) + check_learnability(args.learnability)
    if args.same_machine:
        failures += check_forced_rerun(now)
    if status := dvc_status():  # the corpus stage's "always changed" counts only if its pin moved
        failures.append(f"dvc status is not clean:\n{json.dumps(status, indent=1)}")
    for f in failures:
        print(f"repro-check: FAIL {f}", file=sys.stderr)
    print(f"repro-check: {'FAILED' if failures else 'OK'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
