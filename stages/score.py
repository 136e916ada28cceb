"""Stage score@<config>: PREDICTIONS + BASE_PREDICTIONS (the untrained base model's) -> METRICS
(the paper's metrics, per epoch, beside the paper's target), HEADLINE/{headline,verdict}.json (the
final adapter's Table 3 numbers and their verdicts) and OUT (details and plot data).

    python stages/score.py CONFIG --decoded DECODED --predictions PREDICTIONS --base-predictions BASE_PREDICTIONS --metrics METRICS --headline HEADLINE --out OUT
"""

import argparse

from pronounce.core.cli import run_stage
from pronounce.core.params import load_params
from pronounce.scoring.score import run_score


def main(a):
    job = load_params().score_job(a.config)
    run_score(job, a.decoded, a.predictions, a.base_predictions, a.metrics, a.out, headline_dir=a.headline)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    for name in ("--decoded", "--predictions", "--base-predictions", "--metrics", "--headline", "--out"):
        parser.add_argument(name, required=True)
    run_stage(main, parser.parse_args())
