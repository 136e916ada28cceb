"""What each figure compares: the groups of benchmarks, each running its workloads (fresh child
processes of `benchmarks.child`, value and baseline interleaved repeat by repeat) into figures."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from . import ROOT, release, workspace
from .child import MARK
from .report import MiB, bar, figure, skipped

# Every figure of each group (the GPU's also when skipped), in the order they are reported.
FIGURES = {
    "decode": ("decode.throughput_vs_floor", "decode.cpu_vs_floor", "decode.throughput_vs_naive",
               "decode.peak_rss_4x_vs_1x", "decode.peak_anon_rss_4x_vs_1x"),
    "materialize": ("materialize.throughput_vs_floor", "materialize.peak_rss_4x_vs_1x",
                    "materialize.peak_anon_rss_4x_vs_1x"),
    "collator": ("collator.examples_per_s",),
    "evaluate": ("evaluate.batched_vs_one_at_a_time",),
    "dvc": ("dvc.noop_repro_overhead",),
    "score": ("score.intervals_overhead",),
    "gpu": ("gpu.train_mfu", "gpu.train_tokens_per_s", "gpu.generate_batched_vs_one", "gpu.peak_memory"),
    "e2e": ("e2e.dvc_repro",),
    "release": release.FIGURES,  # and release.stage.<stage>, one per stage
}
GROUPS = tuple(FIGURES)
OPT_IN = ("e2e", "release")  # tens of minutes each: only when asked for
DEFAULT_GROUPS = tuple(g for g in GROUPS if g not in OPT_IN)


def read_params() -> dict:
    """params.yaml as written (a benchmark reads a few values; it validates nothing)."""
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


class Bench:
    """A run's settings, its scratch folder, and the child processes that measure."""

    def __init__(self, args):
        self.args, self.quick, self.profiles = args, args.quick, not args.no_profile
        self.repeats = args.repeats or (1 if args.quick else 3)
        self.scale = args.scale or (200 if args.quick else 5000)
        self.ws = Path(args.workdir or tempfile.mkdtemp(prefix="pronounce-bench-"))
        self.ws.mkdir(parents=True, exist_ok=True)
        self._corpora, self._small = {}, None
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # children import benchmarks
        self.env = {**os.environ, "PYTHONPATH": path,
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
                    "HF_DATASETS_CACHE": str(self.ws / "hf-cache"), "TOKENIZERS_PARALLELISM": "false",
                    "PYTHONWARNINGS": "ignore"}

    def child(self, kind: str, a: dict, *flags) -> dict:
        """One workload in a fresh process: what it measured (a failure raises with its stderr)."""
        proc = subprocess.run([sys.executable, "-m", "benchmarks.child", kind, json.dumps(a), *flags],
                              env=self.env, capture_output=True, text=True, timeout=3600)
        lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"bench child {kind} failed ({proc.returncode}): {proc.stderr[-4000:]}")
        return json.loads(lines[-1][len(MARK):])

    def repeat(self, fns: list) -> list[list[dict]]:
        """Each fn once per repeat, the order reversed every other repeat (so that drift cancels)."""
        runs = [[] for _ in fns]
        for r in range(self.repeats):
            for i in list(range(len(fns)))[:: -1 if r % 2 else 1]:
                runs[i].append(fns[i]())
        return runs

    def explain(self, figs: dict, names, kind: str, args, of: str, memory: bool = False) -> None:
        """Where a bar is missed: the top of a profile of one more run of the slow side, `kind` on
        args() (cProfile, or with `memory` the Python allocations live at the RSS peak)."""
        missed = [n for n in names if figs[n]["met"] is False]
        if missed and self.profiles:
            r = self.child(kind, args(), "--memprofile" if memory else "--profile")
            for n in missed:
                figs[n].update({"memory_profile": {"of": of, **r["memory_profile"]}} if memory
                               else {"profile": {"of": of, "top": r["profile"]}})

    def corpus(self, n: int) -> dict:
        if n not in self._corpora:
            self._corpora[n] = workspace.build_scaled_corpus(self.ws / f"corpus-{n}", n)
        return self._corpora[n]

    def decoded(self, n: int) -> str:
        """A decoded copy of the n-utterance corpus (the decode group's, or made here)."""
        out = self.ws / f"decoded-{n}"
        if not (out / "report.json").is_file():
            self.child("decode", {"corpus": self.corpus(n)["corpus"], "out": fresh(out)})
        return str(out)

    def small(self) -> dict:
        if self._small is None:
            self._small = self.child("prepare", {"ws": str(self.ws / "small")})
        return self._small


def fresh(path) -> str:
    shutil.rmtree(path, ignore_errors=True)
    return str(path)


def _rates(runs) -> list[float]:
    return [r["n"] / r["seconds"] for r in runs]


def g_decode(b: Bench) -> dict:
    n1, n4 = b.scale, 4 * b.scale
    c1, c4 = b.corpus(n1), b.corpus(n4)
    paths = {"paths_file": c1["paths_file"]}
    dec1, floor, floor16, floor_write, naive, dec4 = b.repeat([
        lambda: b.child("decode", {"corpus": c1["corpus"], "out": fresh(b.ws / f"decoded-{n1}")}),
        lambda: b.child("floor", paths),
        lambda: b.child("floor", {**paths, "dtype": "int16"}),
        lambda: b.child("floor", {**paths, "dtype": "int16", "out": str(b.ws / "floor-write.arrow")}),
        lambda: b.child("naive", paths),
        lambda: b.child("decode", {"corpus": c4["corpus"], "out": fresh(b.ws / f"decoded-{n4}")}),
    ])

    def ratio(other):
        return round(statistics.median(d / f for d, f in zip(_rates(dec1), _rates(other))), 3)
    setup = {"utterances": n1, "utterances_4x": n4, "wav_files": "hardlink", "wav_mib": round(c1["wav_bytes"] / MiB, 1)}
    figs = {
        "decode.throughput_vs_floor": figure(
            f"pronounce.data.decode.run_decode, {n1} utterances (release layout) -> Arrow", "clips/s", _rates(dec1),
            "the floor: sf.read(path, dtype='float32') of the same files, nothing else", _rates(floor),
            bar("ratio", ">=", 1 / 1.6, "within 1.6x of the floor (ratio >= 0.625)"), **setup,
            floor_int16=round(statistics.median(_rates(floor16))), ratio_vs_floor_int16=ratio(floor16),
            floor_int16_note="sf.read(path, dtype='int16'): the read decode does for 16-bit 16 kHz files "
                             "(no conversion to float): clips/s, and decode's ratio to it",
            floor_with_write=round(statistics.median(_rates(floor_write))),
            ratio_vs_floor_with_write=ratio(floor_write),
            floor_with_write_note="sf.read as int16 plus ArrowWriter (background) of the 16-bit audio column alone "
                                  "(the output decode writes whatever it does): clips/s, and decode's ratio to it"),
        "decode.cpu_vs_floor": figure(
            f"CPU seconds of run_decode, {n1} utterances (every thread: the reader and the Arrow writer)", "s",
            [r["cpu_seconds"] for r in dec1], "the floor's CPU seconds (sf.read float32, one thread)",
            [r["cpu_seconds"] for r in floor], bar("ratio", "<=", 1.6, "within 1.6x of the floor's CPU time"),
            digits=3, main_thread_cpu_s=round(statistics.median(r["main_thread_cpu_seconds"] for r in dec1), 3),
            main_thread_ratio=round(statistics.median(r["main_thread_cpu_seconds"] / f["cpu_seconds"]
                                                      for r, f in zip(dec1, floor)), 3),
            note="what a shared machine measures steadily; on idle cores the writer thread overlaps the reader, "
                 "so decode's wall time follows its main thread (main_thread_ratio)"),
        "decode.throughput_vs_naive": figure(
            f"pronounce.data.decode.run_decode, {n1} utterances", "clips/s", _rates(dec1),
            "naive: datasets.Dataset.from_dict(paths).map(librosa.load(path, sr=16000), keep_in_memory=True)",
            _rates(naive), bar("ratio", ">=", 5.0, "at least 5x faster than naive (ratio >= 5)"), **setup,
            ceiling=round(statistics.median(f / n for f, n in zip(_rates(floor), _rates(naive))), 2),
            ceiling_note="floor clips/s over naive clips/s: the ratio a decoder as fast as the floor would get",
            naive_first_call_s=round(statistics.median(r["first_call_seconds"] for r in naive), 2),
            naive_first_call_note="untimed warm-up: librosa's first load in a fresh process (lazy imports)"),
        **rss_figures("decode", "run_decode", dec1, dec4, n1, n4),
    }
    b.explain(figs, ("decode.throughput_vs_floor", "decode.cpu_vs_floor", "decode.throughput_vs_naive"), "decode",
              lambda: {"corpus": c1["corpus"], "out": fresh(b.ws / "decoded-profile")},
              f"run_decode, {n1} utterances (cProfile, top by own time)")
    n = max(b.scale // 4, 50)
    b.explain(figs, ("decode.peak_rss_4x_vs_1x", "decode.peak_anon_rss_4x_vs_1x"), "decode",
              lambda: {"corpus": b.corpus(n)["corpus"], "out": fresh(b.ws / "decoded-memprofile")},
              f"run_decode, {n} utterances (tracemalloc at the RSS peak, growth since start, Python allocations "
              "only)", memory=True)
    return figs


def rss_figures(group: str, fn: str, runs1, runs4, n1, n4) -> dict:
    def mib(runs, key):
        return [r[key] / MiB for r in runs]
    flat = bar("ratio", "<=", 1.10, "flat: <= 10% growth from 1x to 4x")
    return {
        f"{group}.peak_rss_4x_vs_1x": figure(
            f"peak RSS of {fn} on {n4} utterances (4x), a fresh process's VmHWM", "MiB",
            mib(runs4, "hwm_bytes"), f"the same on {n1} utterances (1x)", mib(runs1, "hwm_bytes"), flat,
            note="VmHWM (/proc/self/status at the end of the child) rather than wait4's ru_maxrss, which Linux "
                 "starts at the parent's RSS at fork (so it read the bench's own RSS for small children)",
            file_backed_mib_1x_4x=[round(statistics.median(mib(r, "peak_RssFile_bytes")), 1) for r in (runs1, runs4)]),
        f"{group}.peak_anon_rss_4x_vs_1x": figure(
            f"peak anonymous RSS (RssAnon, sampled every 10 ms: heap, no mapped files) of {fn}, 4x", "MiB",
            mib(runs4, "peak_RssAnon_bytes"), "the same at 1x", mib(runs1, "peak_RssAnon_bytes"), flat),
    }


def g_materialize(b: Bench) -> dict:
    n1, n4 = b.scale, 4 * b.scale
    d1, d4, token = b.decoded(n1), b.decoded(n4), b.small()["audio_token"]
    mat1, floor, mat4 = b.repeat([
        lambda: b.child("materialize", {"decoded": d1, "out": fresh(b.ws / "materialized-1x"), "audio_token": token}),
        lambda: b.child("materialize_floor", {"decoded": d1}),
        lambda: b.child("materialize", {"decoded": d4, "out": fresh(b.ws / "materialized-4x"), "audio_token": token}),
    ])
    return {"materialize.throughput_vs_floor": figure(
        f"pronounce.task.materialize.run_materialize, {n1} decoded utterances (2 instances each)", "utterances/s",
        _rates(mat1), "reading the same label columns into Python (read_arrow.select.to_batches.to_pylist), nothing "
        "else", _rates(floor), None, note="the issue sets no throughput bar for materialize"),
        **rss_figures("materialize", "run_materialize", mat1, mat4, n1, n4)}


def g_collator(b: Bench) -> dict:
    a = {"base": b.small()["base"], "decoded": b.small()["decoded"], "examples": 16 if b.quick else 128}
    ours, adhoc = b.repeat([lambda: b.child("collator", {**a, "mode": "collator"}),
                            lambda: b.child("collator", {**a, "mode": "processor"})])
    figs = {"collator.examples_per_s": figure(
        f"PronunciationCollator(rows) on batches of 8 real-speech clips of 2-10 s (mean "
        f"{ours[0]['seconds_of_audio'] / ours[0]['n']:.1f} s), one CPU thread", "examples/s", _rates(ours),
        "processor(text=prompt+answer, audio=clips, padding=True) on the same batches (no label masking)",
        _rates(adhoc), bar("value", ">=", 100, ">= 100 examples/s on one core"), examples=ours[0]["n"])}
    b.explain(figs, figs, "collator", lambda: {**a, "mode": "collator"}, "the collator (cProfile)")
    return figs


def g_evaluate(b: Bench) -> dict:
    s = b.small()
    max_new = 8 if b.quick else read_params()["eval"]["max_new_tokens"]
    a = {"base": s["base"], "decoded": s["decoded"], "materialized": s["materialized"], "max_new_tokens": max_new,
         "limit": 16 if b.quick else None}
    batched, single = b.repeat([lambda: b.child("evaluate", {**a, "batch_size": 8}),
                                lambda: b.child("evaluate", {**a, "batch_size": 1})])
    same = [sum(x["outputs"][k] == y["outputs"].get(k) for k in x["outputs"]) for x, y in zip(batched, single)]
    figs = {"evaluate.batched_vs_one_at_a_time": figure(
        f"pronounce.evaluation.generation.Generator, test instances sorted by clip duration, batches of 8, greedy, "
        f"max_new_tokens={max_new}, tiny model, one CPU thread", "instances/s", _rates(batched),
        "the same Generator one instance at a time (batch 1)", _rates(single),
        bar("ratio", ">=", 4.0, ">= 4x the throughput of one at a time"), digits=2, instances=batched[0]["n"],
        tokens_generated=batched[0]["tokens"], identical_outputs=f"{min(same)} of {batched[0]['n']}",
        identical_per_repeat=same)}
    b.explain(figs, figs, "evaluate", lambda: {**a, "batch_size": 8}, "batched generation (cProfile, top by own time)")
    return figs


def g_score(b: Bench) -> dict:
    """The score stage's time with the bootstrap intervals over its time without them (one run,
    interleaved): 2,000 resamples on 5,000 instances (2,500 utterances x 2 tasks) and 11 checkpoints."""
    a = {"utterances": 100 if b.quick else 2500, "checkpoints": 3 if b.quick else 11,
         "n_resamples": 200 if b.quick else 2000}
    with_, without = b.repeat([lambda: b.child("score", {**a, "intervals": True}),
                               lambda: b.child("score", {**a, "intervals": False})])
    figs = {"score.intervals_overhead": figure(
        f"scoring {a['checkpoints']} checkpoints x {2 * a['utterances']} instances (score_rows) plus every interval "
        f"({a['n_resamples']} speaker-clustered resamples, 125 speakers) and the consecutive paired comparisons",
        "s", [r["seconds"] for r in with_], "the same scoring without intervals", [r["seconds"] for r in without],
        bar("ratio", "<=", 2.0, "intervals add at most ~2x to the score stage's time"), digits=2, **a)}
    b.explain(figs, figs, "score", lambda: {**a, "intervals": True}, "scoring with intervals (cProfile)")
    return figs


def g_dvc(b: Bench) -> dict:
    target = "decode" if b.quick else "materialize"  # materialize: decode, base and materialize
    repo = workspace.clean_copy(b.ws / "dvc-repo")
    workspace.run(["dvc", "repro", "-q", target], repo, timeout=1800)
    noop, version = b.repeat([lambda: workspace.noop_repro(repo, target),
                              lambda: workspace.run(["dvc", "version"], repo)])
    fig = figure(f"a no-op `dvc repro {target}` (up to date, in a clean copy of the project)", "s",
                 [s for s, _ in noop], "`dvc version` (DVC's own start-up)", [s for s, _ in version],
                 bar("delta", "<=", 1.5, "at most 1.5 s more than `dvc version`"), digits=3,
                 really_noop=all(ok for _, ok in noop))
    if fig["met"] is False and b.profiles:
        fig["profile"] = {"of": "one no-op dvc repro (cProfile, top by own time)",
                          "top": workspace.profile_noop_repro(repo, target, b.ws / "dvc-repro.prof")}
    return {"dvc.noop_repro_overhead": fig}


def g_gpu(b: Bench) -> dict:
    p = read_params()
    recipe = p["train"]["recipes"]["paper"]
    a = {"lora": p["lora"], "batch_size": recipe["batch_size"], "learning_rate": recipe["learning_rate"],
         "gradient_checkpointing": recipe["gradient_checkpointing"]}
    if b.quick:
        a.update(steps=2, warmup=1, gen_tokens=8)
    r = b.child("gpu", a)
    if "skipped" in r:
        return {n: skipped(r["skipped"], model=r["model"]) for n in FIGURES["gpu"]}
    t, g, common = r["train"], r["generate"], {"device": r["device"], "model": r["model"]}
    return {
        "gpu.train_mfu": figure(
            f"LoRA r={a['lora']['r']} training, bf16, batch {t['batch_size']} ({t['tokens_per_step']} tokens/step): "
            "model FLOPs/s of a frozen base with LoRA (4*N_text per token, attention, the LM head on the answers, "
            "the audio encoder's forward)", "TFLOP/s", [t["model_flops_per_s"] / 1e12],
            f"dense bf16 peak of {r['device']}", [t["peak_flops_per_s"] and t["peak_flops_per_s"] / 1e12], None,
            note="ratio = model FLOPs utilisation" if t["peak_flops_per_s"] else
            "ratio = MFU; no peak is known for this device name",
            util_6n=t["util_6n"], flops_terms=t["flops"]["terms"], **common),
        "gpu.train_tokens_per_s": figure(
            "LoRA training tokens/s through the pipeline's fused-LM-head loss", "tokens/s", [t["tokens_per_s"]],
            "the same steps through the plain full-logits loss", [t["plain_loss"]["tokens_per_s"]], None,
            plain_peak_memory_gib=round(t["plain_loss"]["peak_memory_bytes"] / 2**30, 2), **common),
        "gpu.generate_batched_vs_one": figure(
            f"greedy generation, batch {g['batch_size']}, {g['new_tokens']} new tokens", "tokens/s",
            [g["batched_tokens_per_s"]], "one prompt at a time", [g["single_tokens_per_s"]], None, **common),
        "gpu.peak_memory": figure(
            "peak GPU memory allocated (training, fused loss)", "GiB", [t["peak_memory_bytes"] / 2**30],
            "device memory", [r["memory_total_bytes"] / 2**30], None,
            generation_peak_gib=round(g["peak_memory_bytes"] / 2**30, 2), **common),
    }


def g_e2e(b: Bench) -> dict:
    r = workspace.end_to_end(b.ws, timeout=4 * 3600)
    fig = figure("the default `dvc repro` of a clean copy of the project", "s", [r["seconds"]],
                 "the sum of its stage commands' wall times", [sum(s["seconds"] for s in r["stages"])], None,
                 rc=r["rc"], stages=r["stages"],
                 peak_rss_mib=max((s["peak_rss_mib"] for s in r["stages"]), default=None),
                 **({"tail": r["tail"]} if r["tail"] else {}))
    return {"e2e.dvc_repro": fig}


RUNNERS = {"score": g_score, "decode": g_decode, "materialize": g_materialize, "collator": g_collator, "evaluate": g_evaluate,
           "dvc": g_dvc, "gpu": g_gpu, "e2e": g_e2e, "release": release.g_release}
