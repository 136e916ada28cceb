"""The `pronounce` command (`pronounce.__main__:main`, also `python -m pronounce`).

It lives here, not in cli.py: the stage scripts import cli.py, and dvc.yaml lists what each
stage imports, so the command's modules stay out of every stage's dependencies.
"""

import sys

from .core.errors import PipelineError


def main(argv=None) -> int:
    """Parse the subcommand (each lives in its own module) and run it; a PipelineError is one line."""
    import argparse

    from .assess import cli as assess_cli
    from .assess import serve

    top = argparse.ArgumentParser(prog="pronounce", description="LLM-based English pronunciation assessment")
    sub = top.add_subparsers(dest="command", required=True, metavar="command")
    assess_cli.add_parser(sub)
    serve.add_parser(sub)
    args = top.parse_args(argv)
    try:
        return args.run(args)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
