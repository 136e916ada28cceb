"""Stage report: scores/<config>/ of every config + the training logs -> metrics/report.md (the
paper's Table 3 layout, ours beside the paper's) and metrics/plots/ (cross-config plot data)."""

from pronounce.cli import run_stage
from pronounce.params import load_params
from pronounce.report import run_report


def main():
    run_report(load_params(), "scores", "dvclive", "metrics/report.md", "metrics/plots")


if __name__ == "__main__":
    run_stage(main)
