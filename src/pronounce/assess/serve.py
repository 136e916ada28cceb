"""`pronounce serve`: a local web page over one loaded adapter (the optional `serve` extra, Gradio).

    pronounce serve --model models/pretrained_r320            # http://127.0.0.1:7860
    pronounce serve --model models/pretrained_r320 --host 0.0.0.0 --port 8000

The model is loaded once, before the page opens; every request goes through one queue to one
worker (concurrency 1: a second generation at the same time would only share the same cores
or GPU and double the memory of activations), so requests are answered in arrival order and
the model is never copied. A recording is read and checked by the same code as `pronounce
assess` (audio.decode_audio, assess.load_clip) and answered by the same `Assessor`; a bad
input gets its one-line reason in the page and the server goes on. Nothing is fetched from the
network: Gradio's telemetry and version check are off, its fonts are served locally, and the
server binds to localhost unless --host says otherwise.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
QUEUE_SIZE = 64  # requests waiting beyond this are refused at once ("queue is full") rather than left hanging
EXAMPLES = ("We call it bear", "Mark is going to see elephant", "Two six four eight", "Kate loves China")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="a local web page: record or upload a sentence and see what went wrong",
        description="Load one trained adapter once and serve a web page (Gradio) where a recording, from "
                    "the microphone or a file, is assessed as `pronounce assess` does. Needs the serve extra: "
                    "pip install -e \".[serve]\".")
    p.add_argument("--model", required=True, help="a trained config folder, e.g. models/pretrained_r320 "
                   "(or one of its adapter folders, e.g. models/pretrained_r320/epoch-2)")
    p.add_argument("--base", help="the base model: a folder with base.json (default: models/base beside "
                   "--model's config folder), or a model folder or Hub id")
    p.add_argument("--params", default="params.yaml",
                   help="the pipeline's params (data.max_seconds, eval.batch_size, eval.max_new_tokens)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this "
                   "machine only; 0.0.0.0 serves the network, without authentication)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--queue-size", type=int, default=QUEUE_SIZE,
                   help=f"requests that may wait for the model; more are refused at once (default {QUEUE_SIZE})")
    p.set_defaults(run=run)


def _gradio():
    from .api import AssessError

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry, no version check (network)
    try:
        import gradio
    except ImportError:
        raise AssessError("pronounce serve needs Gradio: pip install -e \".[serve]\"") from None
    return gradio


class Service:
    """The loaded model and what the page shows about it; `answer` is the queue's one worker."""

    def __init__(self, assessor, load_seconds: float, log=None):
        self.assessor = assessor
        self.load_seconds = load_seconds
        self.requests = 0
        self.lock = threading.Lock()  # the queue runs one at a time; this makes it true for any caller
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))

    def answer(self, audio_path, text) -> tuple[str, dict]:
        """One recording's result as an HTML fragment and as `pronounce assess --json` gives it
        (`{"error": reason}` for an input refused before the model); a bad input is one line.
        The page shows the uploaded file's name, not the server's temporary copy."""
        from .api import AssessError, Recording, check_text
        from .report import render_error, render_fragment

        started = time.perf_counter()
        with self.lock:
            self.requests += 1
            n = self.requests
            try:
                if not audio_path:
                    raise AssessError("no recording: record one with the microphone or upload an audio file")
                check_text(text, "sentence", example="We call it bear")
                result = self.assessor.assess([Recording(str(audio_path), text)])[0]
                result["path"] = Path(audio_path).name
            except AssessError as e:
                result = None
                reason = str(e)
        seconds = time.perf_counter() - started
        footer = (f"request {n} answered in {seconds:.2f} s by the model loaded once at start "
                  f"({self.load_seconds:.1f} s)")
        if result is None:
            self.log(f"serve: request {n}: {seconds:.2f} s, refused: {reason}")
            return render_error(reason, footer), {"error": reason, "request": n, "seconds": round(seconds, 3)}
        if result["error"]:  # the upload's name, not the server's temporary copy
            result["error"] = result["error"].replace(str(audio_path), result["path"])
        self.log(f"serve: request {n}: {seconds:.2f} s, " + (f"error: {result['error']}" if result["error"] else "ok"))
        # `recording` (the uploaded file's name) in place of `path`: a server's temporary path means
        # nothing to the client, and Gradio's client takes any {"path": ...} for a file to download.
        data = {("recording" if k == "path" else k): (Path(v).name if k == "path" else v) for k, v in result.items()}
        return render_fragment(result, footer), {**data, "request": n, "seconds": round(seconds, 3)}


def build_app(service: Service, banner_html: str, queue_size: int = QUEUE_SIZE):
    """The page: the model's banner, recording + sentence, and the result."""
    gr = _gradio()
    from .report import CSS

    with gr.Blocks(title="Pronunciation assessment", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as app:  # uploads older than an hour are removed hourly
        gr.HTML(banner_html, elem_id="model")
        with gr.Row():
            with gr.Column(scale=2):
                # no "share" button: it offers to post the recording to a hosted service
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Recording", buttons=["download"],
                                 elem_id="recording")
                text = gr.Textbox(label="The sentence read", placeholder="We call it bear", elem_id="sentence")
                gr.Examples([[s] for s in EXAMPLES], inputs=[text], label="or pick one")
                button = gr.Button("Assess", variant="primary", elem_id="assess")
            with gr.Column(scale=3):
                result = gr.HTML(elem_id="result")
                with gr.Accordion("the result as JSON (as pronounce assess --json)", open=False):
                    data = gr.JSON(elem_id="json")
        button.click(service.answer, [audio, text], [result, data], api_name="assess", concurrency_limit=1)
    app.queue(default_concurrency_limit=1, max_size=queue_size)
    return app, CSS


def run(args) -> int:
    from .api import Assessor, find_adapter, quiet_known_noise
    from .report import render_banner
    from ..evaluation.evaluate import set_threads
    from ..core.params import load_params

    _gradio()  # the missing extra is reported before the model loads
    find_adapter(args.model)
    params = load_params(args.params)
    set_threads(params.eval.cpu_threads)
    quiet_known_noise()
    started = time.perf_counter()
    assessor = Assessor(args.model, base=args.base, params=params)
    load_seconds = time.perf_counter() - started
    service = Service(assessor, load_seconds)
    print(f"serve: loaded {assessor.adapter} in {load_seconds:.1f} s", file=sys.stderr, flush=True)
    print(f"serve: {assessor.card['banner']}", file=sys.stderr, flush=True)
    app, css = build_app(service, render_banner(assessor.card), args.queue_size)
    print(f"serve: http://{args.host}:{args.port}/ (Ctrl-C stops it)", file=sys.stderr, flush=True)
    app.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False, quiet=True,
               show_error=False, css=css)
    return 0
