"""One benchmark workload in a fresh process, so that every memory figure is one process's own:

    python -m benchmarks.child KIND '{"arg": ...}' [--profile | --memprofile]

prints `BENCH_RESULT {json}`: the seconds of the work alone (imports and an untimed warm-up run
excluded: lazy imports and first-call set-up are not what is measured), what it counted, and its
memory (Linux's /proc/self/status): VmHWM, the kernel's peak RSS since exec (a child's ru_maxrss
from wait4 is no use: Linux starts it at the parent's RSS at fork), and the peaks of RssAnon (heap)
and RssFile (mapped files) sampled every 10 ms. `--profile` adds cProfile's top entries by own
time; `--memprofile` the Python allocation sites live at the RSS peak (tracemalloc).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
import tracemalloc

from . import BUNDLED
from .profiles import short_name, top_entries

MARK = "BENCH_RESULT "

# Each workload takes its arguments, does its warm-up and returns `work`: the timed part, which
# returns what it counted (`n`: the items done).


def _warm(a, fn) -> None:
    """fn(out) once, untimed, into a scratch folder beside a["out"]."""
    warm = tempfile.mkdtemp(prefix="warm-", dir=os.path.dirname(os.path.abspath(a["out"])))
    fn(f"{warm}/out")
    shutil.rmtree(warm)


def w_decode(a):
    from pronounce.data.decode import run_decode

    _warm(a, lambda out: run_decode(str(BUNDLED), out, 30.0, 1.0, progress=False))

    def work():
        r = run_decode(a["corpus"], a["out"], 30.0, 1.0, progress=False)
        return {"n": sum(r["kept"].values()), "rejected": r["rejected"]}
    return work


def _paths(a) -> list[str]:
    with open(a["paths_file"], encoding="utf-8") as f:
        return f.read().splitlines()


def w_floor(a):
    """The floor: soundfile's read of the same files, nothing else; with `write`, reading them as
    decode stores them (16-bit PCM) and writing that column alone with pronounce's ArrowWriter
    (background thread, as decode uses it): the bytes decode must write in any case."""
    import pyarrow as pa
    import soundfile as sf

    from pronounce.core.artifacts import ArrowWriter

    paths, dtype = _paths(a), a.get("dtype", "float32")
    sf.read(paths[0], dtype=dtype)

    def work():
        writer = a.get("out") and ArrowWriter(a["out"], pa.schema([("audio", pa.list_(pa.int16()))]), background=True)
        for p in paths:
            audio = sf.read(p, dtype=dtype)[0]
            if writer:
                writer.write({"audio": audio})
        if writer:
            writer.close()
        return {"n": len(paths)}
    return work


def w_naive(a):
    """What a first attempt would write: datasets' map of librosa.load over the paths, in memory."""
    import datasets
    import librosa

    datasets.disable_progress_bars()

    def work(paths=_paths(a)):
        ds = datasets.Dataset.from_dict({"path": paths})
        return {"n": len(ds.map(lambda r: {"audio": librosa.load(r["path"], sr=16000)[0]}, keep_in_memory=True))}
    start = time.perf_counter()  # librosa's first load in a process is slow (lazy imports, numba)
    work(_paths(a)[:4])
    first = time.perf_counter() - start
    return lambda: {**work(), "first_call_seconds": first}


def w_materialize(a):
    from pronounce.task.materialize import run_materialize

    _warm(a, lambda out: run_materialize(a["decoded"], out, a["audio_token"], progress=False))

    def work():
        counts = run_materialize(a["decoded"], a["out"], a["audio_token"], progress=False).values()
        return {"n": sum(c["utterances"] for c in counts), "instances": sum(c["instances"] for c in counts)}
    return work


def w_materialize_floor(a):
    """Reading the label columns materialize reads into Python, nothing else."""
    from pronounce.core.artifacts import read_arrow
    from pronounce.data.corpus import SPLITS
    from pronounce.task.materialize import LABEL_COLUMNS

    read_arrow(f"{a['decoded']}/train.arrow").select(LABEL_COLUMNS).slice(0, 8).to_pylist()

    def work():
        return {"n": sum(len(batch.to_pylist()) for split in SPLITS
                         for batch in read_arrow(f"{a['decoded']}/{split}.arrow").select(LABEL_COLUMNS).to_batches())}
    return work


def collator_inputs(a):
    """Batches of 8 rows with real speech of 2-10 s (bundled clips joined and cut), alternating
    APA/MDD prompts with their real answers, shuffled as training sees them."""
    import numpy as np

    from pronounce.core.artifacts import read_arrow
    from pronounce.model.processor import load_processor
    from pronounce.task.prompts import TASKS, apa_answer, mdd_answer, user_turn

    processor = load_processor(a["base"])
    table = read_arrow(f"{a['decoded']}/train.arrow").select(
        ["text", "accuracy", "fluency", "prosodic", "total", "pronounced_phones", "audio"]).to_pylist()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(a["examples"]):
        target = int(rng.uniform(2.0, 10.0) * 16000)
        parts, have = [], 0
        while have < target:
            parts.append(np.asarray(table[int(rng.integers(len(table)))]["audio"], dtype=np.float32))
            have += len(parts[-1])
        utt, task = table[i % len(table)], TASKS[i % 2]
        answer = apa_answer(utt) if task == "apa" else mdd_answer(utt["text"], utt["pronounced_phones"])
        rows.append({"prompt": user_turn(task, processor.audio_token), "answer": answer,
                     "audio": np.concatenate(parts)[:target]})
    return processor, [rows[i:i + 8] for i in range(0, len(rows), 8)]


def w_collator(a):
    import torch

    from pronounce.task.prompts import answer_turn
    from pronounce.training.collator import PronunciationCollator

    torch.set_num_threads(1)
    processor, batches = collator_inputs(a)
    if a["mode"] == "collator":
        collate = PronunciationCollator(processor)
    else:  # the ad-hoc way: the processor on the batch, as its docs show (no label masking)
        def collate(rows):
            return processor(text=[r["prompt"] + answer_turn(r["answer"]) for r in rows],
                             audio=[r["audio"] for r in rows], sampling_rate=16000, padding=True, return_tensors="pt")
    collate(batches[0])  # warm-up (the collator's prompt cache, lazy imports)
    audio_s = round(sum(len(r["audio"]) for b in batches for r in b) / 16000, 1)

    def work():
        for b in batches:
            collate(b)
        return {"n": sum(len(b) for b in batches), "seconds_of_audio": audio_s}
    return work


def w_evaluate(a):
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
    batches = make_batches(test_instances(a["materialized"])[: a.get("limit")], a["batch_size"])
    generate(batches[0][:1])  # warm-up

    def work():
        out = [r for b in batches for r in generate(b)]
        return {"n": len(out), "tokens": sum(r["n_tokens"] for r in out),
                "outputs": {f"{r['utt_id']}/{r['task']}": r["raw"] for r in out}}
    return work


def w_prepare(a):
    """The tiny model and the bundled corpus decoded and materialized (for collator and evaluate)."""
    from pronounce.model.processor import load_processor

    from .workspace import prepare_small

    def work():
        paths = prepare_small(a["ws"])
        return {**paths, "audio_token": load_processor(paths["base"]).audio_token}
    return work


def w_gpu(a):
    from .gpu import gpu_figures

    return lambda: gpu_figures(a)


def score_inputs(n_utts: int, n_checkpoints: int, seed: int = 0):
    """Synthetic labels of n_utts utterances (125 speakers, as speechocean762's test set; 5 words of
    3 phones, 10% of phones mispronounced) and n_checkpoints checkpoints of parsed predictions
    (noisy scores and transcripts), as the score stage reads them."""
    import random

    from pronounce.scoring.score import with_pairs
    from pronounce.task.parse import parse_output

    rng = random.Random(seed)
    phones = "AA AE AH AO B D EH IH IY K L M N P S T UW Z".split()
    labels = {}
    for k in range(n_utts):
        words, canonical, pronounced = [], [], []
        for w in range(5):
            ph = [rng.choice(phones) for _ in range(3)]
            mis = [{"canonical_phone": ph[i], "index": i, "pronounced_phone": rng.choice(phones)}
                   for i in range(3) if rng.random() < 0.1]
            said = list(ph)
            for m in mis:
                said[m["index"]] = m["pronounced_phone"]
            words.append({"text": f"W{w}", "phones": ph, "mispronunciations": mis})
            canonical += ph
            pronounced += said
        u = f"{k:09d}"
        labels[u] = with_pairs({"utt_id": u, "speaker": f"{k % 125:04d}", "text": " ".join(f"W{w}" for w in range(5)),
                                **{a: float(rng.randint(0, 10)) for a in ("accuracy", "fluency", "prosodic", "total")},
                                "words": words, "canonical_phones": canonical, "pronounced_phones": pronounced})
    checkpoints = []
    for c in range(n_checkpoints):
        rows = []
        for u, lab in labels.items():
            scores = {a: max(0, min(10, round(lab[a] + rng.gauss(0, 2)))) for a in ("accuracy", "fluency", "prosodic", "total")}
            said = [p if rng.random() > 0.15 else rng.choice(phones) for p in lab["pronounced_phones"] if rng.random() > 0.05]
            for task, raw in (("apa", json.dumps(scores)),
                              ("mdd", json.dumps({"word_transcript": lab["text"], "phoneme_transcript": " ".join(said)}))):
                r = parse_output(task, raw)
                rows.append({"utt_id": u, "task": task, "status": r.status, "flags": list(r.flags), "fields": r.fields,
                             "stopped": "eos"})
        checkpoints.append((f"epoch-{c}", c, rows))
    return labels, checkpoints


def w_score(a):
    """The score stage's work on n_checkpoints x 2 x n_utts answers: every metric of every
    checkpoint (score_rows), and with `intervals` also the bootstrap of them all (per-utterance
    table, every interval, the paired comparisons of consecutive checkpoints) and their JSON. The
    same inputs and the same untimed imports on both sides, so the baseline is this minus intervals."""
    from pronounce.scoring.intervals import Settings, checkpoint_intervals, utterance_table
    from pronounce.scoring.metrics import kaldi_align
    from pronounce.scoring.score import score_rows

    labels, checkpoints = score_inputs(a["utterances"], a["checkpoints"])
    settings = Settings(0, a["n_resamples"], "speaker", 10)

    def work():
        kaldi_align.cache_clear()  # no alignment is reused from the warm-up
        scored = {name: score_rows(rows, labels) for name, _, rows in checkpoints}
        if a["intervals"]:
            table = utterance_table(sorted(labels), labels, scored)
            names = list(scored)
            got = checkpoint_intervals(table, settings, list(zip(names[1:], names)))
            # what the stage writes for the intervals alone: utterances.json and the intervals
            json.dumps(table), json.dumps(got)
        return {"n": 2 * len(labels) * len(checkpoints)}
    return work


WORKLOADS = {"score": w_score, "decode": w_decode, "floor": w_floor, "naive": w_naive,
             "materialize": w_materialize, "materialize_floor": w_materialize_floor, "collator": w_collator,
             "evaluate": w_evaluate, "prepare": w_prepare, "gpu": w_gpu}


class Memory:
    """Peaks of /proc/self/status's memory lines, sampled every 10 ms in a thread. With `trace`, a
    tracemalloc snapshot is kept each time the RSS peak grows by 4 MiB, to name the sites at the peak."""

    def __init__(self, trace: bool):
        self.trace, self.peak, self.snap, self.snap_rss = trace, {}, None, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        """Folds the current values into the peaks; returns the current RSS."""
        with open("/proc/self/status", encoding="ascii") as f:
            now = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f)
                   if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}
        for k, v in now.items():
            self.peak[k] = max(self.peak.get(k, 0), v)
        return now["VmRSS"]

    def _run(self):
        while not self.stop.wait(0.01):
            rss = self._sample()
            if self.trace and rss > self.snap_rss + (4 << 20):
                self.snap, self.snap_rss = tracemalloc.take_snapshot(), rss

    def __enter__(self):
        if self.trace:
            tracemalloc.start(8)
            self.start = tracemalloc.take_snapshot()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._sample()

    def report(self) -> dict:
        out = {"hwm_bytes": self.peak["VmHWM"],
               **{f"peak_{k}_bytes": self.peak[k] for k in ("VmRSS", "RssAnon", "RssFile")}}
        if self.snap is not None:  # what the work holds at the peak: the growth since it started, by site
            diff = [d for d in self.snap.compare_to(self.start, "traceback")
                    if d.size_diff > 0 and "importlib" not in d.traceback[-1].filename]
            out["memory_profile"] = {"rss_at_snapshot_bytes": self.snap_rss,
                                     "python_traced_growth_bytes": sum(d.size_diff for d in diff),
                                     "top": [{"site": _site(d.traceback), "bytes": d.size_diff, "blocks": d.count_diff}
                                             for d in diff[:10]]}
        return out


def _site(tb) -> str:
    """Where an allocation happened: the innermost frame, and the innermost frame of pronounce's."""
    frames = [f"{short_name(f.filename)}:{f.lineno}" for f in tb]  # oldest first
    ours = [f for f in frames if f.startswith("pronounce/")]
    return frames[-1] if not ours or ours[-1] == frames[-1] else f"{frames[-1]} via {ours[-1]}"


def main(argv: list[str]) -> int:
    import contextlib
    import cProfile

    work = WORKLOADS[argv[0]](json.loads(argv[1]))
    prof = cProfile.Profile() if "--profile" in argv[2:] else None
    with Memory(trace="--memprofile" in argv[2:]) as mem, prof or contextlib.nullcontext():
        start, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
        counts = work()
        seconds = time.perf_counter() - start
        # CPU seconds of the process (every thread) and of the calling thread alone: on a shared
        # machine they move far less than wall time (decode's writer thread is the difference).
        cpu, main = time.process_time() - cpu, time.thread_time() - main
    out = {"seconds": seconds, "cpu_seconds": cpu, "main_thread_cpu_seconds": main, **counts, **mem.report(), **({"profile": top_entries(prof)} if prof else {})}
    print(MARK + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
