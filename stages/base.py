"""Stage base: model.base -> OUT (the tiny model built, its tokenizer trained on the corpus
resource folder TOKENIZER_CORPUS; a Hub id pinned to a commit, a local main-layout copy
converted, or a native folder referenced).

    python stages/base.py --out OUT --tokenizer-corpus TOKENIZER_CORPUS
"""

import argparse

from pronounce.core.cli import run_stage
from pronounce.core.params import load_params
from pronounce.model.base import run_base


def main(out: str, tokenizer_corpus: str):
    p = load_params()
    m = p.model
    manifest = run_base(m.base, m.revision, p.seed, out, tokenizer_corpus=tokenizer_corpus,
                        attn_implementation=m.attn_implementation)
    pinned = f" @ {manifest['commit']}" if manifest.get("commit") else ""
    print(f"base: {manifest['base']}{pinned} -> {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--out", "--tokenizer-corpus"):
        parser.add_argument(name, required=True)
    a = parser.parse_args()
    run_stage(main, a.out, a.tokenizer_corpus)
