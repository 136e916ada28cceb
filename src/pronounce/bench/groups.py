"""The benchmark groups of `pronounce.bench`: each runs its workloads (fresh child processes of
`pronounce.bench.proc`, interleaved repeat by repeat) and returns its figures."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import dvc as bench_dvc
from .data import build_scaled_corpus
from .proc import MARK
from .report import MiB, bar, figure, skipped

GROUPS = ("decode", "materialize", "collator", "evaluate", "dvc", "gpu", "e2e")
DEFAULT_GROUPS = GROUPS[:-1]
# Every figure each group writes (skipped GPU figures included), for readers and the test.
FIGURES = {
    "decode": ("decode.throughput_vs_floor", "decode.throughput_vs_naive", "decode.peak_rss_4x_vs_1x",
               "decode.peak_anon_rss_4x_vs_1x"),
    "materialize": ("materialize.throughput_vs_floor", "materialize.peak_rss_4x_vs_1x",
                    "materialize.peak_anon_rss_4x_vs_1x"),
    "collator": ("collator.examples_per_s",),
    "evaluate": ("evaluate.batched_vs_one_at_a_time",),
    "dvc": ("dvc.noop_repro_overhead",),
    "gpu": ("gpu.train_mfu", "gpu.train_tokens_per_s", "gpu.generate_batched_vs_one", "gpu.peak_memory"),
    "e2e": ("e2e.dvc_repro",),
}


def read_params() -> dict:
    """params.yaml as written (not validated: a benchmark reads a few values and should not
    stop on a key another change is adding)."""
    import yaml

    return yaml.safe_load((bench_dvc.ROOT / "params.yaml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- children


class Bench:
    def __init__(self, args):
        self.args, self.quick = args, args.quick
        self.repeats = args.repeats or (1 if args.quick else 3)
        self.scale = args.scale or (200 if args.quick else 5000)
        self.ws = Path(args.workdir or tempfile.mkdtemp(prefix="pronounce-bench-"))
        self.ws.mkdir(parents=True, exist_ok=True)
        self.profiles = not args.no_profile
        self._corpora, self._small, self._decoded = {}, None, {}
        self.env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
                        HF_DATASETS_CACHE=str(self.ws / "hf-cache"), TOKENIZERS_PARALLELISM="false",
                        PYTHONWARNINGS="ignore")

    def child(self, kind: str, a: dict, *flags, timeout: int = 3600) -> dict:
        """Run one workload in a fresh process; its result, plus its peak RSS from wait4."""
        cmd = [sys.executable, "-m", "pronounce.bench.proc", kind, json.dumps(a), *flags]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=self.env, text=True)
            deadline = time.monotonic() + timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.02)
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0), err.seek(0)
            text, errors = out.read(), err.read()
        lines = [line for line in text.splitlines() if line.startswith(MARK)]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"bench child {kind} failed ({proc.returncode}): {errors[-4000:]}")
        result = json.loads(lines[-1][len(MARK):])
        result["ru_maxrss_bytes"] = usage.ru_maxrss * 1024
        return result

    def corpus(self, n: int) -> dict:
        if n not in self._corpora:
            self._corpora[n] = build_scaled_corpus(self.ws / f"corpus-{n}", n)
        return self._corpora[n]

    def decoded(self, n: int) -> str:
        """A decoded copy of the n-utterance corpus (the decode benchmark's, or made here)."""
        out = self.ws / f"decoded-{n}"
        if not (out / "report.json").is_file():
            self.fresh(out)
            self.child("decode", {"corpus": self.corpus(n)["corpus"], "out": str(out)})
        return str(out)

    def small(self) -> dict:
        if self._small is None:
            self._small = self.child("prepare", {"ws": str(self.ws / "small")})
        return self._small

    @staticmethod
    def fresh(path) -> str:
        shutil.rmtree(path, ignore_errors=True)
        return str(path)

    def repeat(self, fns: list) -> list[list[dict]]:
        """Each fn run once per repeat, the order reversed every other repeat (drift cancels)."""
        runs = [[] for _ in fns]
        for r in range(self.repeats):
            order = list(range(len(fns)))[:: -1 if r % 2 else 1]
            for i in order:
                runs[i].append(fns[i]())
        return runs


# --------------------------------------------------------------------------- groups


def g_decode(b: Bench) -> dict:
    n1, n4 = b.scale, 4 * b.scale
    c1, c4 = b.corpus(n1), b.corpus(n4)
    d1, d4 = b.ws / f"decoded-{n1}", b.ws / f"decoded-{n4}"
    fw_out = b.ws / "floor-write.arrow"
    dec1, floor, floor16, floor_write, naive, dec4 = b.repeat([
        lambda: b.child("decode", {"corpus": c1["corpus"], "out": b.fresh(d1)}),
        lambda: b.child("floor", {"paths_file": c1["paths_file"]}),
        lambda: b.child("floor", {"paths_file": c1["paths_file"], "dtype": "int16"}),
        lambda: b.child("floor_write", {"paths_file": c1["paths_file"], "out": str(fw_out)}),
        lambda: b.child("naive", {"paths_file": c1["paths_file"], "cache_dir": str(b.ws / "hf-cache")}),
        lambda: b.child("decode", {"corpus": c4["corpus"], "out": b.fresh(d4)}),
    ])
    def rate(runs):
        return [r["n"] / r["seconds"] for r in runs]

    setup = {"utterances": n1, "utterances_4x": n4, "wav_files": c1["wav_files"],
             "wav_mib": round(c1["wav_bytes"] / MiB, 1)}
    figs = {
        "decode.throughput_vs_floor": figure(
            f"pronounce.decode.run_decode, {n1} utterances (release layout) -> Arrow", "clips/s", rate(dec1),
            "the floor: sf.read(path, dtype='float32') of the same files, nothing else", rate(floor),
            bar("ratio", ">=", 0.5, "within 2x of the floor (ratio >= 0.5)"), **setup,
            floor_int16=round(statistics.median(rate(floor16))),
            ratio_vs_floor_int16=round(statistics.median(d / f for d, f in zip(rate(dec1), rate(floor16))), 3),
            floor_int16_note="sf.read(path, dtype='int16'): the read decode does for 16-bit 16 kHz files "
                             "(no conversion to float): clips/s, and decode's ratio to it",
            floor_with_write=round(statistics.median(rate(floor_write))),
            ratio_vs_floor_with_write=round(statistics.median(d / f for d, f in zip(rate(dec1), rate(floor_write))), 3),
            floor_with_write_note="sf.read as int16 plus ArrowWriter (background) of the 16-bit audio column alone "
                                  "(the output decode writes whatever it does): clips/s, and decode's ratio to it"),
        "decode.throughput_vs_naive": figure(
            f"pronounce.decode.run_decode, {n1} utterances", "clips/s", rate(dec1),
            "naive: datasets.Dataset.from_dict(paths).map(librosa.load(path, sr=16000), keep_in_memory=True)",
            rate(naive), bar("ratio", ">=", 5.0, "at least 5x faster than naive (ratio >= 5)"), **setup,
            ceiling=round(statistics.median(f / n for f, n in zip(rate(floor), rate(naive))), 2),
            ceiling_note="floor clips/s over naive clips/s: the ratio a decoder as fast as the floor would get",
            naive_first_call_s=round(statistics.median(r["first_call_seconds"] for r in naive), 2),
            naive_first_call_note="untimed warm-up: librosa's first load in a fresh process (lazy imports)"),
    }
    figs.update(rss_figures(b, "decode", "run_decode", dec1, dec4, n1, n4))
    misses = [k for k in ("decode.throughput_vs_floor", "decode.throughput_vs_naive") if figs[k]["met"] is False]
    if misses and b.profiles:
        prof = b.child("decode", {"corpus": c1["corpus"], "out": b.fresh(b.ws / "decoded-profile")}, "--profile")
        for k in misses:
            figs[k]["profile"] = {"of": f"run_decode, {n1} utterances (cProfile, top by own time)",
                                  "top": prof["profile"]}
    if any(figs[k]["met"] is False for k in ("decode.peak_rss_4x_vs_1x", "decode.peak_anon_rss_4x_vs_1x")) \
            and b.profiles:
        n = max(b.scale // 4, 50)
        mem = b.child("decode", {"corpus": b.corpus(n)["corpus"], "out": b.fresh(b.ws / "decoded-memprofile")},
                      "--memprofile")
        for k in ("decode.peak_rss_4x_vs_1x", "decode.peak_anon_rss_4x_vs_1x"):
            figs[k]["memory_profile"] = {"of": f"run_decode, {n} utterances (tracemalloc at the RSS peak, "
                                               "growth since start, Python allocations only)",
                                         **mem["memory_profile"]}
    return figs


def rss_figures(b: Bench, group: str, fn: str, runs1, runs4, n1, n4) -> dict:
    def mib(runs, key):
        return [r[key] / MiB for r in runs]

    flat = bar("ratio", "<=", 1.10, "flat: <= 10% growth from 1x to 4x")
    return {
        f"{group}.peak_rss_4x_vs_1x": figure(
            f"peak RSS of {fn} on {n4} utterances (4x), a fresh process's VmHWM", "MiB",
            mib(runs4, "hwm_bytes"), f"the same on {n1} utterances (1x)", mib(runs1, "hwm_bytes"), flat,
            note="VmHWM (/proc/self/status at the end of the child) rather than wait4's ru_maxrss, which Linux "
                 "starts at the parent's RSS at fork (so it read the bench's own RSS for small children)",
            wait4_ru_maxrss_mib_1x_4x=[round(statistics.median(mib(r, "ru_maxrss_bytes")), 1) for r in (runs1, runs4)],
            file_backed_mib_1x_4x=[round(statistics.median(mib(r, "peak_RssFile_bytes")), 1) for r in (runs1, runs4)]),
        f"{group}.peak_anon_rss_4x_vs_1x": figure(
            f"peak anonymous RSS (RssAnon, sampled every 10 ms: heap, no mapped files) of {fn}, 4x", "MiB",
            mib(runs4, "peak_RssAnon_bytes"), "the same at 1x", mib(runs1, "peak_RssAnon_bytes"), flat),
    }


def g_materialize(b: Bench) -> dict:
    n1, n4 = b.scale, 4 * b.scale
    d1, d4 = b.decoded(n1), b.decoded(n4)
    token = b.small()["audio_token"]
    mat1, floor, mat4 = b.repeat([
        lambda: b.child("materialize", {"decoded": d1, "out": b.fresh(b.ws / "materialized-1x"), "audio_token": token}),
        lambda: b.child("materialize_floor", {"decoded": d1}),
        lambda: b.child("materialize", {"decoded": d4, "out": b.fresh(b.ws / "materialized-4x"), "audio_token": token}),
    ])
    figs = {"materialize.throughput_vs_floor": figure(
        f"pronounce.materialize.run_materialize, {n1} decoded utterances (2 instances each)", "utterances/s",
        [r["n"] / r["seconds"] for r in mat1],
        "reading the same label columns into Python (read_arrow.select.to_batches.to_pylist), nothing else",
        [r["n"] / r["seconds"] for r in floor], None, note="the issue sets no throughput bar for materialize")}
    figs.update(rss_figures(b, "materialize", "run_materialize", mat1, mat4, n1, n4))
    return figs


def g_collator(b: Bench) -> dict:
    s = b.small()
    a = {"base": s["base"], "decoded": s["decoded"], "examples": 16 if b.quick else 128}
    ours, adhoc = b.repeat([lambda: b.child("collator", {**a, "mode": "collator"}),
                            lambda: b.child("collator", {**a, "mode": "processor"})])
    fig = figure(
        f"PronunciationCollator(rows) on batches of 8 real-speech clips of 2-10 s (mean "
        f"{ours[0]['seconds_of_audio'] / ours[0]['n']:.1f} s), one CPU thread", "examples/s",
        [r["n"] / r["seconds"] for r in ours],
        "processor(text=prompt+answer, audio=clips, padding=True) on the same batches (no label masking)",
        [r["n"] / r["seconds"] for r in adhoc], bar("value", ">=", 100, ">= 100 examples/s on one core"),
        examples=ours[0]["n"])
    if fig["met"] is False and b.profiles:
        fig["profile"] = {"of": "the collator (cProfile)", "top": b.child("collator", {**a, "mode": "collator"},
                                                                         "--profile")["profile"]}
    return {"collator.examples_per_s": fig}


def g_evaluate(b: Bench) -> dict:
    s = b.small()
    max_new = b.args.max_new_tokens or (8 if b.quick else read_params()["eval"]["max_new_tokens"])
    a = {"base": s["base"], "decoded": s["decoded"], "materialized": s["materialized"], "max_new_tokens": max_new,
         "limit": 16 if b.quick else None}
    batched, single = b.repeat([lambda: b.child("evaluate", {**a, "batch_size": 8}),
                                lambda: b.child("evaluate", {**a, "batch_size": 1})])
    same = [sum(x["outputs"][k] == y["outputs"].get(k) for k in x["outputs"]) for x, y in zip(batched, single)]
    fig = figure(
        f"pronounce.evaluate.Generator, test instances sorted by clip duration, batches of 8, greedy, "
        f"max_new_tokens={max_new}, tiny model, one CPU thread", "instances/s",
        [r["n"] / r["seconds"] for r in batched], "the same Generator one instance at a time (batch 1)",
        [r["n"] / r["seconds"] for r in single], bar("ratio", ">=", 4.0, ">= 4x the throughput of one at a time"),
        digits=2, instances=batched[0]["n"], tokens_generated=batched[0]["tokens"],
        identical_outputs=f"{min(same)} of {batched[0]['n']}", identical_per_repeat=same)
    if fig["met"] is False and b.profiles:
        pre = [b.child("evaluate", {**a, "max_new_tokens": 1, "batch_size": bs}) for bs in (8, 1)]
        fig["prefill_share"] = {
            "batched": round(pre[0]["seconds"] / statistics.median(r["seconds"] for r in batched), 3),
            "one_at_a_time": round(pre[1]["seconds"] / statistics.median(r["seconds"] for r in single), 3),
            "note": "time of the same run with max_new_tokens=1 (collate + prompt/audio forward) over the full run"}
        fig["profile"] = {"of": "batched generation (cProfile, top by own time)",
                          "top": b.child("evaluate", {**a, "batch_size": 8}, "--profile")["profile"]}
    return {"evaluate.batched_vs_one_at_a_time": fig}


def g_dvc(b: Bench) -> dict:
    stages = ("decode",) if b.quick else bench_dvc.PIPELINE_STAGES
    repo = bench_dvc.build_pipeline_copy(b.ws / "dvc-repo", stages)
    noop, version = b.repeat([lambda: bench_dvc.noop_repro(repo), lambda: bench_dvc.dvc_version(repo)])
    fig = figure(f"a no-op `dvc repro` (stages {', '.join(stages)} up to date, in a git repo)", "s",
                 [s for s, _ in noop], "`dvc version` (DVC's own start-up)", version,
                 bar("delta", "<=", 1.5, "at most 1.5 s more than `dvc version`"), digits=3,
                 really_noop=all(ok for _, ok in noop))
    if fig["met"] is False and b.profiles:
        fig["profile"] = {"of": "one no-op dvc repro (cProfile, top by own time)",
                          "top": bench_dvc.profile_noop_repro(repo, b.ws / "dvc-repro.prof")}
    return {"dvc.noop_repro_overhead": fig}


def g_gpu(b: Bench) -> dict:
    p = read_params()
    recipe = p["train"]["recipes"]["paper"]
    a = {"lora": p["lora"], "batch_size": recipe["batch_size"], "gradient_checkpointing": recipe["gradient_checkpointing"],
         "learning_rate": recipe["learning_rate"]}
    if b.quick:
        a.update(steps=2, warmup=1, gen_tokens=8)
    r = b.child("gpu", a)
    names = FIGURES["gpu"]
    if "skipped" in r:
        return {n: skipped(r["skipped"], model=r["model"]) for n in names}
    t, g = r["train"], r["generate"]
    common = {"device": r["device"], "model": r["model"]}
    f, plain = t["flops"], t["plain_loss"]
    mfu = figure(f"LoRA r={a['lora']['r']} training, bf16, batch {t['batch_size']} ({t['tokens_per_step']} tokens/step): "
                 "model FLOPs/s of a frozen base with LoRA (4*N_text per token, attention, the LM head on the answers, "
                 "the audio encoder's forward)", "TFLOP/s", [t["model_flops_per_s"] / 1e12],
                 f"dense bf16 peak of {r['device']}", [t["peak_flops_per_s"] and t["peak_flops_per_s"] / 1e12], None,
                 note="ratio = MFU; no peak is known for this device name" if not t["peak_flops_per_s"] else
                 "ratio = model FLOPs utilisation", util_6n=t["util_6n"], flops_terms=f["terms"], **common)
    return {
        "gpu.train_mfu": mfu,
        "gpu.train_tokens_per_s": figure("LoRA training tokens/s through the pipeline's fused-LM-head loss", "tokens/s",
                                         [t["tokens_per_s"]], "the same steps through the plain full-logits loss",
                                         [plain["tokens_per_s"]], None,
                                         plain_peak_memory_gib=round(plain["peak_memory_bytes"] / 2**30, 2), **common),
        "gpu.generate_batched_vs_one": figure(f"greedy generation, batch {g['batch_size']}, {g['new_tokens']} new tokens",
                                              "tokens/s", [g["batched_tokens_per_s"]], "one prompt at a time",
                                              [g["single_tokens_per_s"]], None, **common),
        "gpu.peak_memory": figure("peak GPU memory allocated (training, fused loss)", "GiB", [t["peak_memory_bytes"] / 2**30],
                                  "device memory", [r["memory_total_bytes"] / 2**30], None,
                                  generation_peak_gib=round(g["peak_memory_bytes"] / 2**30, 2), **common),
    }


def g_e2e(b: Bench) -> dict:
    r = bench_dvc.end_to_end(b.ws, timeout=b.args.e2e_timeout)
    stage_s = sum(s["seconds"] for s in r["stages"])
    fig = figure("the default `dvc repro` of a clean copy of the project", "s", [r["seconds"]],
                 "the sum of its stage commands' wall times", [stage_s], None, rc=r["rc"], stages=r["stages"],
                 peak_rss_mib=max((s["peak_rss_mib"] for s in r["stages"]), default=None))
    if r["tail"]:
        fig["tail"] = r["tail"]
    return {"e2e.dvc_repro": fig}


RUNNERS = {"decode": g_decode, "materialize": g_materialize, "collator": g_collator, "evaluate": g_evaluate,
           "dvc": g_dvc, "gpu": g_gpu, "e2e": g_e2e}

