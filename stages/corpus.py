"""Stage corpus: data.corpus -> OUT, its pin (a Hub dataset's commit, a folder's content digest),
which decode depends on (pronounce.data.corpus_pin).

    python stages/corpus.py --out OUT
"""

import argparse

from pronounce.core.cli import run_stage
from pronounce.core.params import load_params
from pronounce.data.corpus_pin import describe, write_pin


def main(out: str):
    pin = write_pin(load_params().data.corpus, out)
    print(f"corpus: {describe(pin)} -> {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    run_stage(main, parser.parse_args().out)
