"""Stage base: model.base -> models/base/ (the tiny model built, a Hub id pinned to a commit, a local
main-layout copy converted, or a native folder referenced)."""

from pronounce.base import run_base
from pronounce.cli import run_stage
from pronounce.params import load_params


def main():
    p = load_params()
    m = p["model"]
    manifest = run_base(m["base"], m["revision"], p["seed"], "models/base",
                        attn_implementation=m["attn_implementation"])
    pinned = f" @ {manifest['commit']}" if manifest.get("commit") else ""
    print(f"base: {manifest['base']}{pinned} -> models/base")


if __name__ == "__main__":
    run_stage(main)
