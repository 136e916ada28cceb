"""A figure (value, baseline, ratio, bar, met) and the markdown of a run (metrics/bench.md)."""

from __future__ import annotations

import statistics

MiB = 2**20


def bar(on: str, op: str, target: float, text: str) -> dict:
    return {"on": on, "op": op, "target": target, "text": text}


def figure(what: str, unit: str, values, baseline_what: str, baselines, the_bar: dict | None,
           digits: int = 1, **details) -> dict:
    """Medians of paired runs; `ratio` and `delta` are the medians of the per-run ratio/difference
    (None where the baseline is unknown)."""
    pairs = [(v, b) for v, b in zip(values, baselines) if b]

    def median(xs, nd):
        return round(statistics.median(xs), nd) if pairs else None
    fig = {"what": what, "unit": unit, "value": round(statistics.median(values), digits),
           "baseline": median([b for _, b in pairs], digits), "baseline_what": baseline_what,
           "ratio": median([v / b for v, b in pairs], 3), "delta": median([v - b for v, b in pairs], 3),
           "bar": the_bar, "met": None,
           "runs": {"value": [round(v, 4) for v in values], "baseline": [b and round(b, 4) for b in baselines]}}
    if the_bar is not None:
        on, target = the_bar["on"], the_bar["target"]
        got = statistics.median(values) if on == "value" else fig[on]
        fig["met"] = bool(got >= target if the_bar["op"] == ">=" else got <= target)
        if not fig["met"] and the_bar["op"] == ">=":
            fig["miss"] = f"{on} {got:.4g} < {target:g}: {target / got:.2f}x short"
        elif not fig["met"]:
            fig["miss"] = (f"{on} {got:.4g} > {target:g}: over by {got - target:.3g}"
                           + (f" ({(got - 1) / (target - 1):.2f}x the allowed growth)" if on == "ratio" and target > 1
                              else ""))
    return {**fig, **details}


def skipped(reason: str, **details) -> dict:
    return {"skipped": reason, "value": None, "baseline": None, "ratio": None, "bar": None, "met": None, **details}


def _num(x, unit=""):
    if x is None:
        return "-"
    return f"{f'{x:,.3g}' if abs(x) < 100 else f'{x:,.0f}'} {unit}".strip()


def _notes(figs: dict) -> list[str]:
    notes = []
    if f := figs.get("evaluate.batched_vs_one_at_a_time"):
        notes.append(f"evaluate: {f['identical_outputs']} generations identical batched and one at a time "
                     f"({f['instances']} instances, {f['tokens_generated']} tokens generated).")
    if f := figs.get("decode.throughput_vs_floor"):
        notes.append(f"decode stores 16-bit PCM (lossless for the corpus's 16-bit files): vs reading them as int16 "
                     f"and nothing else {_num(f['floor_int16'], 'clips/s')}, ratio {f['ratio_vs_floor_int16']}; vs "
                     f"reading and writing that audio column alone {_num(f['floor_with_write'], 'clips/s')}, "
                     f"ratio {f['ratio_vs_floor_with_write']}.")
    if f := figs.get("decode.throughput_vs_naive"):
        notes.append(f"decode vs naive: the floor itself is {f['ceiling']}x naive (the most any decoder reading "
                     f"with soundfile could reach); naive's untimed first librosa.load took "
                     f"{f['naive_first_call_s']} s.")
    for group in ("decode", "materialize"):
        if f := figs.get(f"{group}.peak_rss_4x_vs_1x"):
            notes.append(f"{group}: mapped-file part of the peak RSS {f['file_backed_mib_1x_4x'][0]} MiB at 1x, "
                         f"{f['file_backed_mib_1x_4x'][1]} MiB at 4x; peak RSS is each child's VmHWM (wait4's "
                         f"ru_maxrss starts at the parent's RSS at fork).")
    if "really_noop" in figs.get("dvc.noop_repro_overhead", {}):
        notes.append(f"dvc: the timed `dvc repro` ran no stage: {figs['dvc.noop_repro_overhead']['really_noop']}.")
    return notes


def markdown(result: dict) -> str:
    s, h, figs = result["settings"], result["host"], result["figures"]
    lines = ["# pronounce benchmarks", "",
             f"`{result['command']}`: {s['repeats']} repeat(s), medians; scale {s['scale']} utterances (4x: "
             f"{4 * s['scale']}); {h['cpus']} CPUs, load average {h['load_start']} at the start, {h['load_end']} at "
             f"the end; {result['seconds']:.0f} s in all.", "",
             "| figure | value | baseline | ratio | bar | met |", "|---|---|---|---|---|---|"]
    for name, f in figs.items():
        if "skipped" in f:
            lines.append(f"| {name} | skipped: {f['skipped']} | | | | |")
            continue
        ratio = "-" if f["ratio"] is None else f"{f['ratio']:.3f}" if f["ratio"] < 10 else f"{f['ratio']:.3g}"
        if f["bar"] and f["bar"]["on"] == "delta":
            ratio += f" (+{f['delta']:.3g} s)"
        met = {True: "yes", False: "**no**"}.get(f["met"], "-")
        lines.append(f"| {name} | {_num(f['value'], f['unit'])} | {_num(f['baseline'], f['unit'])} | {ratio} | "
                     f"{f['bar']['text'] if f['bar'] else 'none'} | {met} |")
    lines += [f"| {g} | error: {err.strip().splitlines()[-1][:120]} | | | | |" for g, err in result["errors"].items()]
    if notes := _notes(figs):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    if "stages" in (e2e := figs.get("e2e.dvc_repro", {})):
        lines += ["", f"## End to end: the default `dvc repro` of a clean copy (rc {e2e['rc']})", "",
                  "| stage | wall time | CPU time | peak RSS |", "|---|---|---|---|"]
        lines += [f"| {st['stage']} | {st['seconds']:.1f} s | {st.get('cpu_seconds', 0):.1f} s | {st['peak_rss_mib']:.0f} MiB |"
                  for st in e2e["stages"]]
        lines.append(f"| **all** (dvc included) | {e2e['value']:.1f} s | "
                     f"{sum(st.get('cpu_seconds', 0) for st in e2e['stages']):.1f} s (stages) | "
                     f"{_num(e2e.get('peak_rss_mib'), 'MiB')} |")
    stages = {n: f for n, f in figs.items() if n.startswith("release.stage.")}
    if stages:
        ref = figs.get("release.dvc_repro", {}).get("baseline_ref", "the baseline")
        lines += ["", f"## Release: each stage of the default `dvc repro`, this tree vs {ref} (medians)", "",
                  "| stage | wall | baseline wall | ratio | CPU | baseline CPU | CPU ratio |", "|---|---|---|---|---|---|---|"]
        for name, f in stages.items():
            cpu = [c for c, b in zip(f.get("cpu_seconds") or [], f.get("baseline_cpu_seconds") or []) if c and b]
            base = [b for c, b in zip(f.get("cpu_seconds") or [], f.get("baseline_cpu_seconds") or []) if c and b]
            cpu_ratio = f"{statistics.median(c / b for c, b in zip(cpu, base)):.3f}" if cpu else "-"
            ratio = "-" if f["ratio"] is None else f"{f['ratio']:.3f}"
            lines.append(f"| {name[len('release.stage.'):]} | {_num(f['value'], 's')} | {_num(f['baseline'], 's')} | "
                         f"{ratio} | {_num(statistics.median(cpu) if cpu else None, 's')} | "
                         f"{_num(statistics.median(base) if base else None, 's')} | {cpu_ratio} |")
    missed = [(n, f) for n, f in figs.items() if f.get("met") is False]
    lines += ["", "## Missed bars", ""] if missed else []
    for name, f in missed:
        lines.append(f"**{name}**: {f['miss']}.")
        for key in ("profile", "memory_profile"):
            if key in f:
                lines += ["", f"Top of the {key.replace('_', ' ')} ({f[key]['of']}):", ""]
                lines += [f"- `{row.get('function') or row.get('site')}`: "
                          + (f"{row['tottime_s']:.3f} s own ({row['share']:.0%}), {row['cumtime_s']:.3f} s cum"
                             if "tottime_s" in row else f"{row['bytes'] / MiB:.1f} MiB in {row['blocks']} blocks")
                          for row in f[key]["top"][:6]]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
