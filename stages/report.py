"""Stage report: SCORES/<config>/ of every config + the training logs under LIVE -> OUT (the paper's
Table 3 layout, ours beside the paper's) and PLOTS/ (cross-config plot data).

    python stages/report.py --scores SCORES --live LIVE --out OUT --plots PLOTS
"""

import argparse

from pronounce.core.cli import run_stage
from pronounce.core.params import load_params
from pronounce.scoring.report import run_report


def main(a):
    run_report(load_params().report_job(), a.scores, a.live, a.out, a.plots)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--scores", "--live", "--out", "--plots"):
        parser.add_argument(name, required=True)
    run_stage(main, parser.parse_args())
