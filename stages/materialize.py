"""Stage materialize: data/decoded/ -> data/materialized/ (APA + MDD instances per utterance)."""

from pronounce.base_manifest import resolve_base
from pronounce.cli import run_stage
from pronounce.materialize import run_materialize
from pronounce.model import load_processor
from pronounce.params import load_params


def main():
    load_params()  # validated even though this stage reads no value of its own
    audio_token = load_processor(*resolve_base("models/base")).audio_token
    counts = run_materialize("data/decoded", "data/materialized", audio_token)
    print(f"materialize: {counts}")


if __name__ == "__main__":
    run_stage(main)
