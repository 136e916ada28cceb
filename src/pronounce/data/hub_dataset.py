"""`data.corpus: hf:<id>[@<revision>]`: a Hub dataset read from its snapshot's parquet files.

`datasets.load_dataset(<hub id>)` fails offline even with the dataset in the cache, so it is not
used: the revision resolves to a commit (pronounce.core.hub: a commit or a cached revision without
the network), the dataset card's `configs` block (README.md's YAML front matter; mispeech/
speechocean762 has `data/train-*` and `data/test-*`) names each split's files, and those
parquet files of the snapshot are read with datasets' own parquet builder (memory-mapped Arrow,
made once per file set in HF_HOME/datasets). A card without a `configs` block gets datasets'
convention, `data/<split>-*`. Files missing from the cache are downloaded when online; offline
that is one line naming the `hf download` that fetches them.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import yaml

from ..core import hub
from ..core.artifacts import SPLITS
from ..core.errors import CorpusError

CARD = "README.md"
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.")


def parse_hf(corpus: str) -> tuple[str, str | None]:
    """`hf:<id>[@<revision>]` -> (id, revision or None)."""
    spec = corpus.removeprefix("hf:")
    repo_id, _, revision = spec.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise CorpusError(f"data.corpus: {corpus!r} is not hf:<org>/<name>[@<revision>] "
                          "(e.g. hf:mispeech/speechocean762)")
    return repo_id, revision or None


def split_patterns(card_text: str | None) -> dict[str, list[str]]:
    """split -> file patterns of the card's default config (`configs`), else data/<split>-*."""
    configs = None
    if card_text and card_text.startswith("---"):
        try:
            configs = (yaml.safe_load(card_text.split("---", 2)[1]) or {}).get("configs")
        except yaml.YAMLError:
            configs = None
    if not configs:
        return {s: [f"data/{s}-*"] for s in SPLITS}
    config = next((c for c in configs if c.get("default")), None) or next(
        (c for c in configs if c.get("config_name") == "default"), configs[0])
    files = config.get("data_files") or []
    if isinstance(files, dict):  # split -> pattern(s)
        files = [{"split": k, "path": v} for k, v in files.items()]
    elif isinstance(files, str) or files and not isinstance(files[0], dict):  # one split: train
        files = [{"split": "train", "path": files}]
    return {f["split"]: [f["path"]] if isinstance(f["path"], str) else list(f["path"]) for f in files}


def _matching(folder: Path, patterns: list[str]) -> list[Path]:
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return [folder / n for n in names if any(fnmatch.fnmatch(n, pat) for pat in patterns)]


def _missing(folder: Path | None, patterns: dict[str, list[str]]) -> list[str]:
    """Splits whose files the folder lacks (none matching, or sharded files of N not all there)."""
    missing = []
    for split in SPLITS:
        files = _matching(folder, patterns[split]) if folder is not None else []
        counts = {int(m[2]) for f in files if (m := _SHARD.search(f.name))}
        if not files or any(len([f for f in files if _SHARD.search(f.name)]) < n for n in counts):
            missing.append(split)
    return missing


def hub_files(repo_id: str, revision: str | None) -> tuple[str, dict[str, list[Path]]]:
    """(commit, split -> its parquet files in the cache), downloading what is missing when online."""
    commit = hub.resolve(repo_id, revision, "dataset")
    folder = hub.snapshot(repo_id, commit, "dataset")
    card = folder / CARD if folder is not None else None
    if (card is None or not card.is_file()) and not hub.offline():
        card = hub.file_at(repo_id, commit, CARD, "dataset")
        folder = card.parent
    patterns = split_patterns(card.read_text(encoding="utf-8") if card is not None and card.is_file() else None)
    unknown = [s for s in SPLITS if s not in patterns]
    if unknown:
        raise CorpusError(f"dataset {repo_id}'s card has no split {', '.join(unknown)} (it has {', '.join(patterns)})")
    wanted = sorted({p for s in SPLITS for p in patterns[s]})
    if _missing(folder, patterns):
        folder = hub.files_at(repo_id, commit, [CARD, *wanted], "dataset")
    if missing := _missing(folder, patterns):
        include = " ".join(f'--include "{p}"' for p in wanted)
        raise hub.HubError(f"the cache holds dataset {repo_id} at {commit} without its {', '.join(missing)} files "
                           f"({', '.join(wanted)}): run `{hub.download_command(repo_id, revision, 'dataset')} "
                           f"{include}` on a machine with network and use its HF_HOME here")
    return commit, {s: _matching(folder, patterns[s]) for s in SPLITS}


def load_hub_dataset(corpus: str):
    """A DatasetDict of the corpus's splits from `hf:<id>[@<revision>]`, read from parquet."""
    import datasets

    repo_id, revision = parse_hf(corpus)
    _, files = hub_files(repo_id, revision)
    return datasets.load_dataset("parquet", data_files={s: [str(f) for f in files[s]] for s in SPLITS})
