"""Stage materialize: DECODED -> OUT (APA + MDD instances per utterance), with the audio
placeholder of the base model in BASE.

    python stages/materialize.py --decoded DECODED --base BASE --out OUT
"""

import argparse

from pronounce.core.cli import run_stage
from pronounce.core.params import load_params
from pronounce.model.manifest import resolve_base
from pronounce.model.processor import load_processor
from pronounce.task.materialize import run_materialize


def main(decoded: str, base: str, out: str):
    load_params()  # validated even though this stage reads no value of its own
    audio_token = load_processor(*resolve_base(base)).audio_token
    counts = run_materialize(decoded, out, audio_token)
    print(f"materialize: {counts}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--decoded", "--base", "--out"):
        parser.add_argument(name, required=True)
    a = parser.parse_args()
    run_stage(main, a.decoded, a.base, a.out)
