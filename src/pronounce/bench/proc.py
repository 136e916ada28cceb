"""The workloads of `pronounce.bench`, each run in a fresh child process:

    python -m pronounce.bench.proc KIND '{"arg": ...}' [--profile] [--memprofile]

prints one line `BENCH_RESULT {json}` (the seconds of the work itself, imports excluded, and
what it counted). The parent reads the child's peak RSS from os.wait4, so every memory figure
is one fresh process. `--profile` runs the work under cProfile and adds its top entries;
`--memprofile` adds the Python allocation sites live at the peak RSS (tracemalloc).
"""

from __future__ import annotations

import json
import sys
import time

MARK = "BENCH_RESULT "


def top_entries(prof, n: int = 12) -> list[dict]:
    """The cProfile entries with the most own time: function, own and cumulative seconds, calls."""
    import pstats

    stats = pstats.Stats(prof)
    rows = []
    for (file, line, fn), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():
        rows.append({"function": f"{_short(file)}:{line}({fn})", "tottime_s": round(tottime, 4),
                     "cumtime_s": round(cumtime, 4), "calls": calls})
    rows.sort(key=lambda r: -r["tottime_s"])
    total = sum(r["tottime_s"] for r in rows) or 1.0
    for r in rows:
        r["share"] = round(r["tottime_s"] / total, 3)
    return rows[:n]


# --------------------------------------------------------------------------- workloads
# Each returns (work, finish): work() is what is timed; finish(work's result) -> dict counts.
# Each first does a small run of the same thing, untimed, so that lazy imports and first-call
# set-up are not counted.


def _scratch(a) -> str:
    """A scratch folder beside the output, for the warm-up run."""
    import os
    import tempfile

    return tempfile.mkdtemp(prefix="warm-", dir=os.path.dirname(os.path.abspath(a["out"])))


def w_decode(a):
    import shutil

    from .data import BUNDLED
    from ..decode import run_decode

    warm = _scratch(a)
    run_decode(str(BUNDLED), f"{warm}/out", 30.0, 1.0, progress=False)
    shutil.rmtree(warm)

    def work():
        return run_decode(a["corpus"], a["out"], 30.0, 1.0, progress=False)
    return work, lambda r: {"n": sum(r["kept"].values()), "rejected": r["rejected"]}


def _paths(a):
    with open(a["paths_file"], encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()][: a.get("limit")]


def w_floor(a):
    import soundfile as sf

    paths, dtype = _paths(a), a.get("dtype", "float32")
    sf.read(paths[0], dtype=dtype)

    def work():
        n = 0
        for p in paths:
            sf.read(p, dtype=dtype)
            n += 1
        return n
    return work, lambda n: {"n": n}


def w_floor_write(a):
    """Reading and writing the audio as decode stores it, and nothing else: sf.read as 16-bit
    PCM, then pronounce's ArrowWriter (background thread, as decode uses it) with the audio
    column only (the bytes decode must write in any case)."""
    import pyarrow as pa
    import soundfile as sf

    from ..artifacts import ArrowWriter

    schema = pa.schema([("audio", pa.list_(pa.int16()))])
    paths = _paths(a)
    sf.read(paths[0], dtype="int16")

    def work():
        writer = ArrowWriter(a["out"], schema, background=True)
        for p in paths:
            writer.write({"audio": sf.read(p, dtype="int16")[0]})
        writer.close()
        return writer.count
    return work, lambda n: {"n": n}


def w_naive(a):
    import os

    os.environ["HF_DATASETS_CACHE"] = a["cache_dir"]
    import datasets
    import librosa

    datasets.disable_progress_bars()
    paths = _paths(a)
    start = time.perf_counter()  # librosa's first load in a process is slow (lazy imports, numba)
    datasets.Dataset.from_dict({"path": paths[:4]}).map(lambda r: {"audio": librosa.load(r["path"], sr=16000)[0]},
                                                         keep_in_memory=True)
    first = time.perf_counter() - start

    def work():
        ds = datasets.Dataset.from_dict({"path": paths})
        return ds.map(lambda r: {"audio": librosa.load(r["path"], sr=16000)[0]}, keep_in_memory=True)
    return work, lambda ds: {"n": len(ds), "first_call_seconds": first}


def w_materialize(a):
    import shutil

    from ..materialize import run_materialize

    warm = _scratch(a)
    run_materialize(a["decoded"], f"{warm}/out", a["audio_token"], progress=False)
    shutil.rmtree(warm)

    def work():
        return run_materialize(a["decoded"], a["out"], a["audio_token"], progress=False)
    return work, lambda c: {"n": sum(v["utterances"] for v in c.values()),
                            "instances": sum(v["instances"] for v in c.values())}


def w_materialize_floor(a):
    """Reading the label columns materialize reads into Python, and nothing else."""
    from ..artifacts import read_arrow
    from ..corpus import SPLITS
    from ..materialize import LABEL_COLUMNS

    read_arrow(f"{a['decoded']}/train.arrow").select(LABEL_COLUMNS).slice(0, 8).to_pylist()

    def work():
        n = 0
        for split in SPLITS:
            for batch in read_arrow(f"{a['decoded']}/{split}.arrow").select(LABEL_COLUMNS).to_batches():
                n += len(batch.to_pylist())
        return n
    return work, lambda n: {"n": n}


def collator_inputs(a):
    """Batches of 8 rows with real speech clips of 2-10 s (bundled clips joined and cut),
    alternating APA/MDD prompts with real answers; shuffled, as training sees them."""
    import numpy as np

    from ..artifacts import read_arrow
    from ..model import load_processor
    from ..prompts import TASKS, apa_answer, mdd_answer, user_turn

    processor = load_processor(a["base"])
    table = read_arrow(f"{a['decoded']}/train.arrow").select(
        ["text", "accuracy", "fluency", "prosodic", "total", "pronounced_phones", "audio"]).to_pylist()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(a["examples"]):
        target = int(rng.uniform(2.0, 10.0) * 16000)
        parts, have = [], 0
        while have < target:
            utt = table[int(rng.integers(len(table)))]
            parts.append(np.asarray(utt["audio"], dtype=np.float32))
            have += len(parts[-1])
        utt = table[i % len(table)]
        task = TASKS[i % 2]
        answer = apa_answer(utt) if task == "apa" else mdd_answer(utt["text"], utt["pronounced_phones"])
        rows.append({"prompt": user_turn(task, processor.audio_token), "answer": answer,
                     "audio": np.concatenate(parts)[:target]})
    return processor, [rows[i:i + 8] for i in range(0, len(rows), 8)]


def w_collator(a):
    import torch

    from ..collator import PronunciationCollator
    from ..prompts import answer_turn

    torch.set_num_threads(1)
    processor, batches = collator_inputs(a)
    if a["mode"] == "collator":
        collate = PronunciationCollator(processor)
    else:  # the ad-hoc way: the processor on the batch, as its docs show (no label masking)
        def collate(rows):
            return processor(text=[r["prompt"] + answer_turn(r["answer"]) for r in rows],
                             audio=[r["audio"] for r in rows], sampling_rate=16000, padding=True,
                             return_tensors="pt")
    collate(batches[0])  # warm-up (the collator's prompt cache, lazy imports)

    def work():
        for b in batches:
            collate(b)
        return sum(len(b) for b in batches)
    return work, lambda n: {"n": n, "seconds_of_audio": round(sum(len(r["audio"]) for b in batches for r in b) / 16000, 1)}


def w_evaluate(a):
    import torch

    from ..artifacts import AudioStore
    from ..evaluate import Generator, make_batches, test_instances
    from ..model import load_base_model, load_processor

    torch.set_num_threads(1)
    torch.manual_seed(0)
    processor = load_processor(a["base"])
    model = load_base_model(a["base"]).eval()
    store = AudioStore(f"{a['decoded']}/test.arrow")
    rows = test_instances(a["materialized"])[: a.get("limit")]
    if a.get("group_by_task"):  # what-if: one task per batch (a prompt length per batch)
        rows = sorted(rows, key=lambda r: (r["task"], r["duration"], r["utt_id"]))
    generate = Generator(model, processor, lambda row: store[row["audio_row"]], a["max_new_tokens"])
    batches = make_batches(rows, a["batch_size"])
    generate(batches[0][:1])  # warm-up

    def work():
        return [r for b in batches for r in generate(b)]

    def finish(out):
        return {"n": len(out), "tokens": sum(r["n_tokens"] for r in out),
                "outputs": {f"{r['utt_id']}/{r['task']}": r["raw"] for r in out}}
    return work, finish


def w_prepare(a):
    """The tiny model and the bundled corpus decoded and materialized (for collator/evaluate)."""
    from .data import prepare_small

    def finish(paths):
        from ..model import load_processor

        return {**paths, "audio_token": load_processor(paths["base"]).audio_token}
    return (lambda: prepare_small(a["ws"])), finish


def w_gpu(a):
    from .gpu import gpu_figures

    return (lambda: gpu_figures(a)), (lambda r: r)


WORKLOADS = {"decode": w_decode, "floor": w_floor, "floor_write": w_floor_write, "naive": w_naive, "materialize": w_materialize,
             "materialize_floor": w_materialize_floor,
             "collator": w_collator, "evaluate": w_evaluate, "gpu": w_gpu,
             "prepare": w_prepare}


class MemorySampler:
    """Peaks of VmRSS, RssAnon (heap) and RssFile (mapped files) from /proc/self/status, sampled
    every 10 ms in a thread; with `snapshot`, a tracemalloc snapshot is kept each time the RSS
    peak grows by 4 MiB or more, so the allocation sites at the peak can be reported."""

    KEYS = ("VmRSS", "RssAnon", "RssFile")

    def __init__(self, snapshot: bool = False):
        import threading

        self.peak = dict.fromkeys(self.KEYS, 0)
        self.snapshot, self.snap, self.snap_rss, self.start_snap = snapshot, None, 0, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> dict:
        out = {}
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    key = line.split(":", 1)[0]
                    if key in self.KEYS:
                        out[key] = int(line.split()[1]) * 1024
        except OSError:
            pass
        return out

    def _run(self):
        import tracemalloc

        while not self._stop.wait(0.01):
            now = self._read()
            for k, v in now.items():
                self.peak[k] = max(self.peak[k], v)
            rss = now.get("VmRSS", 0)
            if self.snapshot and rss > self.snap_rss + (4 << 20):
                self.snap, self.snap_rss = tracemalloc.take_snapshot(), rss

    def __enter__(self):
        if self.snapshot:
            import tracemalloc

            tracemalloc.start(8)
            self.start_snap = tracemalloc.take_snapshot()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        for k, v in self._read().items():
            self.peak[k] = max(self.peak[k], v)
        self.hwm = self._read_hwm()

    @staticmethod
    def _read_hwm() -> int | None:
        """VmHWM: the kernel's peak RSS of this process's address space since exec. (A child's
        ru_maxrss from wait4 is no use here: Linux starts it at the parent's RSS at fork.)"""
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def report(self) -> dict:
        out = {f"peak_{k}_bytes": v for k, v in self.peak.items()}
        out["hwm_bytes"] = self.hwm
        if self.snap is not None:
            # What the work itself holds at the peak: the growth since it started, by site.
            diff = [d for d in self.snap.compare_to(self.start_snap, "traceback") if d.size_diff > 0]
            diff = [d for d in diff if "importlib" not in str(d.traceback[-1].filename)]
            out["memory_profile"] = {
                "rss_at_snapshot_bytes": self.snap_rss,
                "python_traced_growth_bytes": sum(d.size_diff for d in diff),
                "top": [{"site": _site(d.traceback), "bytes": d.size_diff, "blocks": d.count_diff}
                        for d in diff[:10]],
            }
        return out


def _short(filename: str) -> str:
    return filename.split("site-packages/")[-1].split("src/")[-1].split("lib/python3")[-1]


def _site(tb) -> str:
    """Where an allocation happened: the innermost frame, and the innermost frame of ours."""
    frames = [f"{_short(f.filename)}:{f.lineno}" for f in tb]  # oldest first
    ours = [f for f in frames if f.startswith("pronounce/") and not f.startswith("pronounce/bench")]
    inner = frames[-1] if frames else "?"
    return inner if not ours or ours[-1] == inner else f"{inner} via {ours[-1]}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    kind, args = argv[0], json.loads(argv[1])
    profile, memprofile = "--profile" in argv[2:], "--memprofile" in argv[2:]
    work, finish = WORKLOADS[kind](args)
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    with MemorySampler(snapshot=memprofile) as mem:
        start = time.perf_counter()
        result = work()
        seconds = time.perf_counter() - start
    if prof is not None:
        prof.disable()
    out = {"seconds": seconds, **finish(result), **mem.report()}
    if prof is not None:
        out["profile"] = top_entries(prof)
    sys.stdout.write(MARK + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
