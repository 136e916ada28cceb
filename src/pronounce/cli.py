"""Shared by the stage scripts in stages/: user errors become one clear line and exit code 2."""

import sys

from .errors import PipelineError


def run_stage(fn, *args) -> None:
    try:
        fn(*args)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
