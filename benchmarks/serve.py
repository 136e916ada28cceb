"""`python -m benchmarks.serve --model models/pretrained_r320`: how live `pronounce serve` feels.

In one run, nothing else of ours running: a `pronounce serve` process is started and timed from
upload to result (an HTTP client: the upload, the queue, both generations, the page's HTML and
JSON) for a 5.00 s clip (the first 5 s of a bundled clip) and for 20 bundled clips sent at once;
then, with the server stopped, the same `Assessor` as `pronounce assess` in this process, for the
same 5 s clip and the same 20 clips in one call (its batches), model load apart; then the whole
`pronounce assess` command on the 20 clips (a process start and a model load included).
`--screenshot PATH` also saves the page after assessing a clip, in headless Chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "data" / "speechocean762-mini"
FIVE_SECONDS = ("SPEAKER0024", "000240073")  # 5.52 s, cut to 5.00 s


def clips(n: int) -> list[tuple[Path, str]]:
    rows = [line.split("\t") for line in (BUNDLED / "test" / "text").read_text().splitlines()][:n]
    return [(next(BUNDLED.glob(f"WAVE/*/{u}.WAV")), t) for u, t in rows]


def five_second_clip(folder: Path) -> tuple[Path, str]:
    import soundfile as sf

    speaker, utt = FIVE_SECONDS
    pcm, rate = sf.read(str(BUNDLED / "WAVE" / speaker / f"{utt}.WAV"), dtype="int16")
    path = folder / "five_seconds.wav"
    sf.write(path, pcm[: 5 * rate], rate, subtype="PCM_16")
    text = dict(line.split("\t") for line in (BUNDLED / "train" / "text").read_text().splitlines()
                + (BUNDLED / "test" / "text").read_text().splitlines())[utt]
    return path, text


def start_server(args, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "pronounce", "serve", "--model", args.model, "--params", args.params,
                             "--port", str(port)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in proc.stderr:
        print(line, end="", file=sys.stderr)
        if line.startswith("serve: http://"):
            time.sleep(1)
            return proc
    raise SystemExit("the server exited before it served")


def screenshot(url: str, clip: tuple[Path, str], out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("PRONOUNCE_CHROMIUM", "/usr/bin/chromium"),
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(url)
        page.locator("#recording input[type=file]").set_input_files(str(clip[0]))
        page.locator("#sentence textarea").fill(clip[1])
        page.locator("#assess").click()
        page.locator("#result table.scores").wait_for(timeout=300_000)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    from PIL import Image  # a palette PNG: a screenshot's few colours, a fraction of the bytes

    Image.open(out).convert("RGB").quantize(colors=128).save(out, optimize=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/pretrained_r320")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--repeats", type=int, default=5, help="timings of the 5 s clip (the median is reported)")
    p.add_argument("--screenshot", help="save the page, after assessing a clip, to this PNG")
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from gradio_client import Client, handle_file

    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    five, batch = five_second_clip(tmp), clips(20)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    figures = {}
    server = start_server(args, port)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False)
        times = []
        for _ in range(args.repeats + 1):  # the first request warms the server up; not counted
            started = time.perf_counter()
            data = client.predict(handle_file(str(five[0])), five[1], api_name="/assess")[1]
            times.append(time.perf_counter() - started)
            assert data["error"] is None, data["error"]
        figures["serve_5s_clip_s"] = statistics.median(times[1:])
        figures["serve_5s_clip_in_worker_s"] = data["seconds"]
        started = time.perf_counter()
        jobs = [client.submit(handle_file(str(path)), text, api_name="/assess") for path, text in batch]
        results = [job.result(timeout=3600)[1] for job in jobs]
        figures["serve_20_clips_s"] = time.perf_counter() - started
        assert all(r["error"] is None for r in results)
        if args.screenshot:  # the clip of docs/serve.md's picture: "two six four eight"
            screenshot(f"http://127.0.0.1:{port}/", next(c for c in batch if c[0].stem == "000030040"), Path(args.screenshot))
    finally:
        server.terminate()
        server.wait(timeout=60)

    from pronounce.assess.api import Assessor, Recording
    from pronounce.core.params import load_params
    from pronounce.evaluation.evaluate import set_threads

    params = load_params(args.params)
    set_threads(params.eval.cpu_threads)
    started = time.perf_counter()
    assessor = Assessor(args.model, params=params)
    figures["assessor_load_s"] = time.perf_counter() - started
    assessor.assess([Recording(str(five[0]), five[1])])  # warm-up, as the server's first request
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        assessor.assess([Recording(str(five[0]), five[1])])
        times.append(time.perf_counter() - started)
    figures["assessor_5s_clip_s"] = statistics.median(times)
    started = time.perf_counter()
    assessor.assess([Recording(str(path), text) for path, text in batch])
    figures["assessor_20_clips_s"] = time.perf_counter() - started
    manifest = tmp / "clips.csv"
    manifest.write_text("".join(f'{path},"{text}"\n' for path, text in batch))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pronounce", "assess", "--model", args.model, "--params", args.params,
                    "--manifest", str(manifest), "--json", "--out", str(tmp / "out.jsonl"), "--no-progress"],
                   check=True, stderr=subprocess.DEVNULL)
    figures["cli_command_20_clips_s"] = time.perf_counter() - started
    figures = {k: round(v, 3) for k, v in figures.items()}
    print(json.dumps(figures, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
