"""`python -m benchmarks` (from the repository root): runs the chosen groups and writes the figures
as JSON and markdown. The usage is in benchmarks/__init__.py."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from .groups import DEFAULT_GROUPS, GROUPS, RUNNERS, Bench
from .report import markdown


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description="Benchmarks of the pipeline's hot paths against same-run baselines.")
    p.add_argument("--quick", action="store_true", help="smoke scale: 200 utterances, 1 repeat, small batches")
    p.add_argument("--only", default="", help=f"comma-separated groups of {', '.join(GROUPS)}")
    p.add_argument("--repeats", type=int, default=0, help="runs per measurement (default 3; 1 with --quick)")
    p.add_argument("--scale", type=int, default=0, help="utterances of the 1x corpus (default 5000; 200 with --quick)")
    p.add_argument("--e2e", action="store_true", help="also the default `dvc repro` of a clean copy (many minutes)")
    p.add_argument("--release", action="store_true",
                   help="also the release group: the default dvc repro and the test suite against --baseline (an hour)")
    p.add_argument("--baseline", default="HEAD~1", help="the release group's previous release: a git ref (default HEAD~1)")
    p.add_argument("--no-profile", action="store_true", help="skip the profiles of missed bars")
    p.add_argument("--out", default="metrics/bench.json", help="JSON output; the markdown goes beside it (.md)")
    p.add_argument("--workdir", default="", help="scratch folder, kept (default: a temp folder, removed at the end)")
    args = p.parse_args(argv)
    groups = [g for g in args.only.split(",") if g] or (list(DEFAULT_GROUPS) + (["e2e"] if args.e2e else [])
                                                         + (["release"] if args.release else []))
    if unknown := set(groups) - set(GROUPS):
        p.error(f"--only: unknown group(s) {', '.join(sorted(unknown))}; choose from {', '.join(GROUPS)}")
    args.groups = [g for g in GROUPS if g in groups]
    return args


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.perf_counter()
    b = Bench(args)
    result = {"command": " ".join(["python -m benchmarks", *argv]),
              "settings": {"repeats": b.repeats, "scale": b.scale, "quick": b.quick, "groups": args.groups,
                           "workdir": str(b.ws)},
              "host": {"cpus": os.cpu_count(), "load_start": [round(x, 2) for x in os.getloadavg()]},
              "figures": {}, "errors": {}}
    try:
        for group in args.groups:
            t0 = time.perf_counter()
            print(f"bench: {group} ...", file=sys.stderr, flush=True)
            try:
                result["figures"].update(RUNNERS[group](b))
            except Exception:  # a crashed group is reported; the others still run
                result["errors"][group] = traceback.format_exc()
                print(result["errors"][group], file=sys.stderr)
            print(f"bench: {group} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:  # the scratch corpora are gigabytes: never leave them behind
        if not args.workdir:
            shutil.rmtree(b.ws, ignore_errors=True)
    result["host"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
