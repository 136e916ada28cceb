"""Benchmarks (not tests) of the pipeline's hot paths, each against a baseline measured in the same
run. They live outside the installed package (setuptools finds packages under src/ only) and run
from the repository root:

    python -m benchmarks                  # the default set (minutes; not e2e)
    python -m benchmarks --quick          # a smoke-scale run
    python -m benchmarks --only decode,collator --repeats 5
    python -m benchmarks --e2e            # adds the default `dvc repro` of a clean copy
    python -m benchmarks --only release --baseline REF   # dvc repro and the suite vs commit REF

Writes metrics/bench.json and metrics/bench.md. Each figure holds the value, the baseline measured
beside it (interleaved repeat by repeat, every measurement a fresh process), their ratio (the
median of the per-repeat ratios), the bar and whether it is met. A missed bar never fails the run
(exit 0 unless a benchmark crashes); it adds the top of a profile of the slow side.

Where things are: __main__ (command line), groups (what each figure compares), child (the
workloads, one fresh process each), workspace (scaled corpora, the small prepared workspace, DVC
copies), profiles (cProfile read back), report (figures and the markdown), gpu (the GPU figures),
release (the default run and the suite against a previous commit), trainsplit (where a training
stage's time goes, by part of the step).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "data" / "speechocean762-mini"
