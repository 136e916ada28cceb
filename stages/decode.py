"""Stage decode: the corpus named by data.corpus -> data/decoded/ (validated 16 kHz audio + labels)."""

from pronounce.cli import run_stage
from pronounce.decode import run_decode, warning_lines
from pronounce.params import load_params


def main():
    data = load_params()["data"]
    report = run_decode(data["corpus"], "data/decoded", data["max_seconds"], data["max_reject_fraction"])
    print(f"decode: kept {report['kept']}, rejected {report['rejected']} (see data/decoded/report.json)")
    for line in warning_lines(report):  # kept but odd: said at the end, not only in the report
        print(line)


if __name__ == "__main__":
    run_stage(main)
