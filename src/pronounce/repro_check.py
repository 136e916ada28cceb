"""The reproducibility check CI runs after `dvc repro` (and users can run the same way):

1. the data stages' output hashes equal those in the committed dvc.lock: they depend on no
   floating-point kernel, so any machine with the pinned versions reproduces them;
2. `dvc repro -f` reruns every stage, training and evaluation included, and reproduces every
   output hash on the same machine (seeded, deterministic algorithms);
3. `dvc status` is clean at the end.

    python -m pronounce.repro_check [--skip-force]

Exits non-zero naming each stage whose hash moved.
"""

import argparse
import subprocess
import sys

import yaml

# Stages reproduced bit-for-bit on any machine (no floating-point kernels involved beyond
# exact conversions; the tiny model's initialisation is seeded CPU RNG).
CROSS_MACHINE_STAGES = ("decode", "base", "materialize")


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


def _lock_now() -> dict:
    with open("dvc.lock", encoding="utf-8") as f:
        return out_hashes(yaml.safe_load(f))


def _committed_lock() -> dict:
    text = subprocess.run(["git", "show", "HEAD:dvc.lock"], capture_output=True, text=True, check=True).stdout
    return out_hashes(yaml.safe_load(text))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-force", action="store_true", help="only compare with the committed dvc.lock")
    args = ap.parse_args(argv)
    failures = []

    committed, now = _committed_lock(), _lock_now()
    failures += [f"differs from the committed dvc.lock: {m}" for m in moved(committed, now, CROSS_MACHINE_STAGES)]
    print(f"repro-check: data stages vs committed dvc.lock: {'OK' if not failures else 'MOVED'}")

    if not args.skip_force:
        subprocess.run(["dvc", "repro", "-f", "-q"], check=True)
        rerun = _lock_now()
        forced = moved(now, rerun)
        failures += [f"not reproduced by dvc repro -f: {m}" for m in forced]
        print(f"repro-check: forced rerun of {len(rerun)} stages: {'OK' if not forced else 'MOVED'}")

    if subprocess.run(["dvc", "status", "-q"]).returncode != 0:  # -q: exit 1 when anything changed
        status = subprocess.run(["dvc", "status"], capture_output=True, text=True).stdout
        failures.append(f"dvc status is not clean:\n{status}")
    for f in failures:
        print(f"repro-check: FAIL {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
