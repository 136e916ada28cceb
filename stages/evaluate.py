"""Stage evaluate@<config> / evaluate_base: greedy generation on the test split -> OUT: a config's
final adapter and the epochs `eval.epochs` selects (adapters under MODEL), or, with CONFIG `base`
and no --model, the untrained base model with its speech LoRA (epoch 0). Generations are cached
in runs/eval-cache/.

    python stages/evaluate.py CONFIG --base BASE --decoded DECODED --materialized MATERIALIZED [--model MODEL] --out OUT
"""

import argparse

from pronounce.core.cli import run_stage
from pronounce.core.params import load_params
from pronounce.evaluation.evaluate import run_evaluate


def main(a):
    job = load_params().eval_job(a.config)
    run_evaluate(job, a.base, a.decoded, a.materialized, a.model, a.out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    for name in ("--base", "--decoded", "--materialized", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--model")
    run_stage(main, parser.parse_args())
