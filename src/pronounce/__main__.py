"""`python -m pronounce <command>`: the same as the `pronounce` console script."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
