"""`pronounce assess`: the command line of pronounce.assess.api.

    pronounce assess --model models/pretrained_r320 --text "We call it bear" my.wav
    pronounce assess --model models/pretrained_r320 --manifest recordings.csv --out results.jsonl

Exit status: 0 when every recording was assessed, 1 when some could not be (each has its
one-line error in the output; the others are assessed), 2 for an input the command cannot
start from (no text, an empty manifest, a folder that is not one of our adapters, params).
Every input is checked before the model is loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

FORMATS = {".jsonl": "json", ".json": "json", ".html": "html", ".htm": "html"}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "assess", help="assess your own recordings with a trained adapter",
        description="APA scores with the paper's rubric band, what the model heard against the expected "
                    "sentence, and the mispronounced words of each recording, phone by phone (ARPAbet, with an "
                    "example word for each). Every output starts with the model's banner: an adapter of the "
                    "tiny smoke model says that its answers mean nothing.")
    p.add_argument("audio", nargs="*", help="audio files (any format soundfile reads), all reading --text")
    p.add_argument("--model", required=True, help="a trained config folder, e.g. models/pretrained_r320 "
                   "(or one of its adapter folders, e.g. models/pretrained_r320/epoch-2)")
    p.add_argument("--text", help="the sentence the speaker read")
    p.add_argument("--manifest", help="a CSV file of rows path,text; relative audio paths are taken from the "
                   "manifest's own folder, not the current directory (data/x.wav in clips/list.csv is "
                   "clips/data/x.wav)")
    p.add_argument("--base", help="the base model: a folder with base.json (default: models/base beside "
                   "--model's config folder), or a model folder or Hub id")
    p.add_argument("--params", default="params.yaml",
                   help="the pipeline's params (data.max_seconds, eval.batch_size, eval.max_new_tokens)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json", help="JSON lines")
    fmt.add_argument("--html", dest="format", action="store_const", const="html", help="a self-contained HTML page")
    p.add_argument("--out", help="write to this file (format from its suffix .jsonl/.json/.html "
                   "unless --json/--html; default: standard output)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def recordings(args):
    from .api import AssessError, Recording, check_text, read_manifest

    if args.manifest and (args.audio or args.text):
        raise AssessError("give either --manifest or audio files with --text, not both")
    if args.manifest:
        return read_manifest(args.manifest)
    if not args.audio:
        raise AssessError("no recordings: give audio files with --text \"...\", or --manifest recordings.csv")
    check_text(args.text, "--text")
    return [Recording(path, args.text) for path in args.audio]


def output_format(args) -> str:
    if args.format:
        return args.format
    return FORMATS.get(Path(args.out).suffix.lower(), "table") if args.out else "table"


def run(args) -> int:
    from ..core.params import load_params
    from ..evaluation.evaluate import set_threads
    from .api import Assessor, find_adapter, quiet_known_noise
    from .report import RENDERERS

    recs = recordings(args)
    find_adapter(args.model)  # a wrong folder is reported before params and the model load
    params = load_params(args.params)
    fmt = output_format(args)
    # Greedy generation needs no seed; the thread count is evaluate's (the tiny model is faster on one).
    set_threads(params.eval.cpu_threads)
    quiet_known_noise()
    assessor = Assessor(args.model, base=args.base, params=params)
    results = assessor.assess(recs, progress=not args.no_progress and len(recs) > 1)
    text = RENDERERS[fmt](results)
    failed = [r for r in results if r["error"] is not None]
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {len(results)} result(s) to {args.out} ({fmt}; {len(failed)} failed)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.out or fmt != "table":  # the table shows them already
        for r in failed:
            print(f"{r['path']}: {r['error']}", file=sys.stderr)
    return 1 if failed else 0

