"""Stage `corpus`: which corpus `data.corpus` is, pinned, so DVC can depend on it in any form.

DVC cannot take `hf:<id>` as a path dependency, and a branch name says nothing of its content, so
`decode` depends on this pin's values (dvc.yaml lists the pin file as a params file of decode:
the values go into dvc.lock, and decode reruns exactly when one changes): for `hf:<id>[@<rev>]`
the dataset commit the revision resolves to (no network when the cache holds it;
pronounce.core.hub); for a release-layout or save_to_disk folder the digest of its files (MD5
over each file's path, size and content, in name order, dot-files skipped). The stage always runs
and writes the same bytes when nothing changed, so decode is then skipped; decode reads the corpus
through the pin (`pinned_corpus`). The digest took 0.05-0.15 s for the bundled corpus (11 MB) and
8 s for 600 MB (the full corpus's size) on 2 shared cores: once per `dvc repro`.
Why: docs/real-run.md#how-the-corpus-pin-is-written
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..core import hub
from ..core.errors import CorpusError
from .corpus import detect_form
from .hub_dataset import parse_hf

KINDS = ("hf", "release", "save_to_disk")


def folder_digest(folder) -> str:
    """md5:<hex> of every file under `folder` (path, size, content), dot-files skipped."""
    root = Path(folder)
    total = hashlib.md5()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if not f.startswith(".")):
            path = Path(dirpath) / name
            h = hashlib.md5()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            total.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0{h.hexdigest()}\n".encode())
    return f"md5:{total.hexdigest()}"


def pin_corpus(corpus: str) -> dict:
    """The pin of `corpus` (every key always present, so dvc.lock's entry keeps one shape)."""
    if corpus.startswith("hf:"):
        repo_id, revision = parse_hf(corpus)
        commit = hub.resolve(repo_id, revision, "dataset")
        return {"corpus": corpus, "kind": "hf", "id": repo_id, "commit": commit, "digest": None}
    form = detect_form(corpus)  # a missing or unknown folder is one line here already
    kind = "release" if form == "release" else "save_to_disk"
    return {"corpus": corpus, "kind": kind, "id": None, "commit": None, "digest": folder_digest(corpus)}


def write_pin(corpus: str, out) -> dict:
    pin = pin_corpus(corpus)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(pin, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return pin


def read_pin(path) -> dict:
    try:
        pin = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorpusError(f"cannot read the corpus pin {str(path)!r} ({e}): run `dvc repro` (its corpus stage "
                          "writes it)") from None
    if pin.get("kind") not in KINDS:
        raise CorpusError(f"{str(path)!r} is not a corpus pin (kind {pin.get('kind')!r}): run `dvc repro`")
    return pin


def pinned_corpus(path, corpus: str) -> str:
    """What decode reads: `hf:<id>@<commit>` for a Hub dataset, else the folder. The pin must be
    of `corpus` (params data.corpus): a stale one is an error, never another corpus decoded."""
    pin = read_pin(path)
    if pin["corpus"] != corpus:
        raise CorpusError(f"{str(path)!r} pins {pin['corpus']!r} but data.corpus is {corpus!r}: run `dvc repro` "
                          "(the corpus stage pins it before decode)")
    return f"hf:{pin['id']}@{pin['commit']}" if pin["kind"] == "hf" else corpus


def describe(pin: dict) -> str:
    if pin["kind"] == "hf":
        return f"{pin['corpus']} -> {pin['id']}@{pin['commit']}"
    return f"{pin['corpus']} ({pin['kind']}, {pin['digest']})"


STAGE = "corpus"


def _pin_is_current(root: Path) -> bool:
    """Whether the pin file holds what the corpus stage would write now (run from `root`)."""
    import yaml

    from ..core.params import load_params

    try:
        path = root / yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["vars"][0]["paths"]["corpus_pin"]
        corpus = load_params(root / "params.yaml").data.corpus
        now = pin_corpus(corpus if corpus.startswith("hf:") else str(root / corpus))
        pinned = read_pin(path)
    except (OSError, KeyError, TypeError, CorpusError, hub.HubError, ValueError):
        return False
    return pinned["corpus"] == corpus and {k: v for k, v in pinned.items() if k != "corpus"} == {
        k: v for k, v in now.items() if k != "corpus"}


def dvc_status(root=".") -> dict:
    """`dvc status --json`, read as a user means "is anything to rerun?": the corpus stage always
    runs (its "always changed"), so it is left out when its pin is current, and shown as "pin
    changed" when a branch moved or the corpus folder was edited (decode would then rerun)."""
    import subprocess

    root = Path(root)
    run = subprocess.run(["dvc", "status", "--json"], cwd=root, capture_output=True, text=True)
    if run.returncode != 0:
        return {"dvc status": [(run.stderr or run.stdout).strip()]}
    status = json.loads(run.stdout or "{}")
    if status.get(STAGE) == ["always changed"]:
        if _pin_is_current(root):
            del status[STAGE]
        else:
            status[STAGE] = ["pin changed"]
    return status
