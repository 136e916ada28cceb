"""Profiles read back for the report: cProfile's top entries, file names shortened."""


def short_name(filename: str) -> str:
    return filename.split("site-packages/")[-1].split("src/")[-1].split("lib/python3")[-1]


def top_entries(prof, n: int = 12) -> list[dict]:
    """cProfile's entries with the most own time (a Profile or a saved file's path)."""
    import pstats

    rows = sorted(({"function": f"{short_name(file)}:{line}({fn})", "tottime_s": round(tottime, 4),
                    "cumtime_s": round(cumtime, 4), "calls": calls}
                   for (file, line, fn), (_, calls, tottime, cumtime, _) in pstats.Stats(prof).stats.items()),
                  key=lambda r: -r["tottime_s"])
    total = sum(r["tottime_s"] for r in rows) or 1.0
    return [{**r, "share": round(r["tottime_s"] / total, 3)} for r in rows[:n]]
