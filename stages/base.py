"""Stage base: model.base -> models/base/ (the tiny model built, or the real one referenced)."""

from pronounce.base import run_base
from pronounce.cli import run_stage
from pronounce.params import load_params


def main():
    p = load_params()
    manifest = run_base(p["model"]["base"], p["model"]["revision"], p["seed"], "models/base")
    print(f"base: {manifest['base']} -> models/base")


if __name__ == "__main__":
    run_stage(main)
