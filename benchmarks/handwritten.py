"""Four hand-written parts weighed against the library that could replace each :

    python -m benchmarks.handwritten [--only jsonindex,arrow,gencache,kvcache] [--repeats 3] [--scale 5000]

Prints one markdown row per figure: ratios against a baseline measured in the same run (each
measurement a fresh process, value and baseline interleaved repeat by repeat, torch at 1 thread).

  jsonindex  pronounce.data.jsonindex (one streaming pass records where each entry lies; each entry is
             parsed when asked for) vs ijson.kvitems (the C backend: every entry streamed into a
             dict) vs json.load, on scores.json of `scale` and 4x `scale` utterances, every entry
             fetched in a shuffled order (decode joins it to the Kaldi tables by id).
  arrow      pronounce.core.artifacts.ArrowWriter (background thread, as decode uses it) vs
             datasets.Dataset.from_generator with the same schema, writing decode's records.
  gencache   the generation cache (pronounce.evaluation.generation): what evaluate costs when DVC's run cache
             misses (any edit to a module the stage lists) but the generations' inputs are the same:
             read from the cache, or resumed from the middle, vs generating afresh.
  kvcache    pronounce.evaluation.kvcache's preallocated cache vs transformers' DynamicCache: the test split's
             batched greedy generation on a CPU (the tiny model, eval params from params.yaml).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import BUNDLED, ROOT

MARK = "HANDWRITTEN_RESULT "


def _status(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


# --------------------------------------------------------------------------- workloads (child side)


def _scores_file(ws: Path, n: int) -> tuple[Path, list[str]]:
    """scores.json of n utterances (the bundled entries replicated under new ids), and its ids."""
    entries = json.loads((BUNDLED / "resource" / "scores.json").read_text(encoding="utf-8"))
    old = sorted(entries)
    ids = [f"{i // len(old):04d}{old[i % len(old)]}" for i in range(n)]
    path = ws / f"scores-{n}.json"
    if not path.is_file():
        new = {k: entries[old[i % len(old)]] for i, k in enumerate(ids)}
        path.write_text(json.dumps(new, indent=2, sort_keys=True, ensure_ascii=False), encoding="utf-8")
    return path, ids


def w_jsonindex(a):
    path, keys = _scores_file(Path(a["ws"]), a["n"])
    random.Random(0).shuffle(keys)

    def work():
        if a["how"] == "index":
            from pronounce.data.jsonindex import index_scores, load_score

            spans = index_scores(path)
            f = open(path, "rb")
            get = lambda k: load_score(f, spans[k])  # noqa: E731
        else:
            with open(path, "rb") as f:
                if a["how"] == "ijson":
                    import ijson

                    entries = dict(ijson.kvitems(f, "", use_float=True))
                else:
                    entries = json.load(f)
            get = entries.__getitem__
        # one entry at a time, as decode uses them; the first 50 kept to compare the variants
        check = [get(k) for k in keys[:50]]
        n = len(check) + sum(1 for k in keys[50:] if get(k) is not None)
        return {"n": n}, lambda: json.dumps(check, sort_keys=True)
    return work


def w_arrow(a):
    import numpy as np
    import pyarrow as pa

    from pronounce.core.artifacts import ArrowWriter, read_arrow
    from pronounce.data.decode import SCHEMA

    rows = read_arrow(Path(a["decoded"]) / "train.arrow").to_pylist()
    for r in rows:
        r["audio"] = np.asarray(r["audio"], dtype=np.int16)  # as decode hands them over
    rows = [rows[i % len(rows)] for i in range(a["n"])]
    out = Path(a["out"])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    def work():
        if a["how"] == "ours":
            w = ArrowWriter(out / "train.arrow", SCHEMA, background=True)
            for r in rows:
                w.write(r)
            w.close()
            files = [out / "train.arrow"]
        else:
            from datasets import Dataset, Features

            # the same rows per write batch as decode's writer (datasets' default is 1000)
            ds = Dataset.from_generator(lambda: iter(rows), features=Features.from_arrow_schema(SCHEMA),
                                        cache_dir=str(out / "hf"), writer_batch_size=32)
            files = [c["filename"] for c in ds.cache_files]

        def check():  # after the measurement: the same utterances and audio, whatever the bytes
            table = pa.concat_tables([read_arrow(f) for f in files])
            h = hashlib.sha256("".join(table.column("utt_id").to_pylist()).encode())
            for clip in table.column("audio").to_pylist():
                h.update(np.asarray(clip, dtype=np.int16).tobytes())
            return h.hexdigest()
        return {"n": len(rows), "bytes": sum(Path(f).stat().st_size for f in files)}, check
    return work


def _generator(a, growing: bool):
    import torch

    from pronounce.data.audio import AudioStore
    from pronounce.evaluation.generation import Generator, make_batches, test_instances
    from pronounce.model.loader import load_base_model
    from pronounce.model.processor import load_processor

    torch.set_num_threads(1)
    torch.manual_seed(0)
    store = AudioStore(f"{a['decoded']}/test.arrow")
    generate = Generator(load_base_model(a["base"]).eval(), load_processor(a["base"]),
                         lambda row: store[row["audio_row"]], a["max_new_tokens"])
    if not growing:
        generate._cache_kwargs = lambda prompt_len: {}  # generate's default DynamicCache
    return generate, make_batches(test_instances(a["materialized"]), a["batch_size"])


def w_kvcache(a):
    generate, batches = _generator(a, a["how"] == "growing")
    generate(batches[0][:1])  # warm-up

    def work():
        out = [r for b in batches for r in generate(b)]
        return {"n": len(out), "tokens": sum(r["n_tokens"] for r in out)}, lambda: json.dumps(out, sort_keys=True)
    return work


def w_gencache(a):
    """cold: load the model and generate every batch (what a run-cache miss costs without this cache);
    warm: the finished entry read back; resume: the first half of the batches already done."""
    from pronounce.evaluation.generation import GenerationCache, generate_checkpoint, make_batches, test_instances

    cache = GenerationCache(a["cache"])
    batches = make_batches(test_instances(a["materialized"]), a["batch_size"])
    expected = {(r["utt_id"], r["task"]) for b in batches for r in b}
    if a["how"] == "resume":
        done = cache.load("done", expected)
        by_id = {(r["utt_id"], r["task"]): r for r in done}
        (Path(a["cache"]) / "half.partial.jsonl").unlink(missing_ok=True)
        for i in range(len(batches) // 2):
            cache.append_partial("half", i, [by_id[r["utt_id"], r["task"]] for r in batches[i]])

    def work():
        if a["how"] == "warm":
            rows = cache.load("done", expected)
        else:
            generate, _ = _generator(a, True)
            key = "half" if a["how"] == "resume" else "cold"
            rows = generate_checkpoint(generate, batches, cache, key, "", progress=False)
            cache.store(key, rows, {})
        return {"n": len(rows)}, lambda: json.dumps(sorted(rows, key=lambda r: (r["utt_id"], r["task"])), sort_keys=True)
    return work


WORKLOADS = {"jsonindex": w_jsonindex, "arrow": w_arrow, "kvcache": w_kvcache, "gencache": w_gencache}


def child(kind: str, a: dict) -> None:
    work = WORKLOADS[kind](a)
    rss0 = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM: the peak below is the work's own
    start = time.perf_counter()
    out, check = work()  # check: what the variants must agree on, computed outside the measurement
    out.update(seconds=time.perf_counter() - start, peak_growth=_status("VmHWM") - rss0, check=check())
    print(MARK + json.dumps(out), flush=True)


# --------------------------------------------------------------------------- figures (parent side)


class Run:
    def __init__(self, ws: Path, repeats: int):
        self.ws, self.repeats, self.rows = ws, repeats, []
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                    "HF_DATASETS_CACHE": str(ws / "hf-cache"), "TRANSFORMERS_VERBOSITY": "error",
                    "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}

    def child(self, kind: str, a: dict) -> dict:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.handwritten", "--child", kind, json.dumps(a)],
                              env=self.env, capture_output=True, text=True, timeout=3600)
        lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
        if proc.returncode or not lines:
            raise RuntimeError(f"{kind} failed: {proc.stderr[-3000:]}")
        return json.loads(lines[-1][len(MARK):])

    def compare(self, what: str, kind: str, variants: dict[str, dict], baseline: str) -> dict[str, list[dict]]:
        """Every variant once per repeat (order reversed every other repeat); one row per non-baseline
        variant: median time and peak-growth ratios to the baseline, and whether the results agree."""
        names = list(variants)
        runs = {n: [] for n in names}
        for r in range(self.repeats):
            for n in names[:: -1 if r % 2 else 1]:
                runs[n].append(self.child(kind, variants[n]))
        base = runs[baseline]
        for n in names:
            if n == baseline:
                continue

            def ratio(key):
                return statistics.median(v[key] / b[key] for v, b in zip(runs[n], base) if b[key] > 0)
            self.rows.append({
                "what": what, "value": n, "baseline": baseline,
                "seconds": round(statistics.median(v["seconds"] for v in runs[n]), 3),
                "baseline_seconds": round(statistics.median(b["seconds"] for b in base), 3),
                "time_ratio": round(ratio("seconds"), 3),
                "peak_MiB": round(statistics.median(v["peak_growth"] for v in runs[n]) / 2**20, 1),
                "baseline_peak_MiB": round(statistics.median(b["peak_growth"] for b in base) / 2**20, 1),
                "same_result": all(v.get("check") == b.get("check") for v, b in zip(runs[n], base))})
            print(self.rows[-1], file=sys.stderr, flush=True)
        return runs


def small(ws: Path) -> dict:
    from .workspace import prepare_small

    return prepare_small(ws / "small")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.handwritten", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="jsonindex,arrow,gencache,kvcache")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scale", type=int, default=5000, help="utterances of scores.json (1x) and of the Arrow write")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return 0
    import yaml

    ev = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["eval"]
    ws = Path(tempfile.mkdtemp(prefix="pronounce-handwritten-"))
    run = Run(ws, args.repeats)
    try:
        only = args.only.split(",")
        if "jsonindex" in only:
            try:
                import ijson  # noqa: F401
                hows = ("json_load", "index", "ijson")
            except ImportError:
                hows = ("json_load", "index")
            for n in (args.scale, 4 * args.scale):
                run.compare(f"scores.json, {n} entries", "jsonindex",
                            {h: {"ws": str(ws), "n": n, "how": h} for h in hows}, "json_load")
        if "arrow" in only:
            s = small(ws)
            run.compare(f"decode's records, {args.scale} rows", "arrow",
                        {h: {"decoded": s["decoded"], "n": args.scale, "how": h, "out": str(ws / f"arrow-{h}")}
                         for h in ("ours", "datasets")}, "datasets")
        gen = {"max_new_tokens": ev["max_new_tokens"], "batch_size": ev["batch_size"]}
        if "kvcache" in only:
            s = small(ws)
            for bs in (ev["batch_size"], 1):  # 1: the baseline of the evaluate benchmark's batched_vs_one
                run.compare(f"greedy generation of the test split, tiny model, batch {bs}, "
                            f"max_new_tokens {ev['max_new_tokens']}", "kvcache",
                            {h: {**s, **gen, "batch_size": bs, "how": h} for h in ("default", "growing")}, "default")
        if "gencache" in only:
            s = small(ws)
            a = {**s, **gen, "cache": str(ws / "gencache")}
            done = run.child("gencache", {**a, "how": "cold"})  # fills the entry `warm` and `resume` read
            shutil.copy(ws / "gencache" / "cold.jsonl", ws / "gencache" / "done.jsonl")
            assert done["n"]
            run.compare("evaluate after a DVC run-cache miss, one checkpoint", "gencache",
                        {h: {**a, "how": h} for h in ("cold", "warm", "resume")}, "cold")
    finally:
        shutil.rmtree(ws, ignore_errors=True)
    print("| figure | value | baseline | time (value / baseline) | ratio | peak growth (value / baseline) | same result |")
    print("|---|---|---|---|---:|---|---|")
    for r in run.rows:
        print(f"| {r['what']} | {r['value']} | {r['baseline']} | {r['seconds']} s / {r['baseline_seconds']} s | "
              f"{r['time_ratio']} | {r['peak_MiB']} / {r['baseline_peak_MiB']} MiB | {r['same_result']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
