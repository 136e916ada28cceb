"""Stage score@<config>: predictions/<config>/ + predictions/base/ -> metrics/<config>.json
(the paper's metrics, per epoch, beside the paper's target) and scores/<config>/ (details and
plot data)."""

import sys

from pronounce.cli import run_stage
from pronounce.params import config_params, load_params
from pronounce.score import run_score


def main(name: str):
    params = load_params()
    config_params(params, name)
    run_score(params, name, "data/decoded", f"predictions/{name}", "predictions/base", f"metrics/{name}.json",
              f"scores/{name}")


if __name__ == "__main__":
    run_stage(main, sys.argv[1])
