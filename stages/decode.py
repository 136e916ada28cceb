"""Stage decode: the corpus pinned in PIN (data.corpus, by the corpus stage) -> OUT (validated
16 kHz audio + labels).

    python stages/decode.py --pin PIN --out OUT
"""

import argparse

from pronounce.core.cli import run_stage
from pronounce.core.params import load_params
from pronounce.data.corpus_pin import pinned_corpus
from pronounce.data.decode import run_decode, warning_lines


def main(pin: str, out: str):
    data = load_params().data
    corpus = pinned_corpus(pin, data.corpus)  # a Hub dataset at its pinned commit
    report = run_decode(corpus, out, data.max_seconds, data.max_reject_fraction)
    print(f"decode: {corpus}: kept {report['kept']}, rejected {report['rejected']} (see {out}/report.json)")
    for line in warning_lines(report):  # kept but odd: said at the end, not only in the report
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pin", required=True)
    parser.add_argument("--out", required=True)
    a = parser.parse_args()
    run_stage(main, a.pin, a.out)
