"""Stage decode: the corpus named by data.corpus -> OUT (validated 16 kHz audio + labels).

    python stages/decode.py --out OUT
"""

import argparse

from pronounce.core.cli import run_stage
from pronounce.core.params import load_params
from pronounce.data.decode import run_decode, warning_lines


def main(out: str):
    data = load_params().data
    report = run_decode(data.corpus, out, data.max_seconds, data.max_reject_fraction)
    print(f"decode: kept {report['kept']}, rejected {report['rejected']} (see {out}/report.json)")
    for line in warning_lines(report):  # kept but odd: said at the end, not only in the report
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    run_stage(main, parser.parse_args().out)
