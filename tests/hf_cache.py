"""A Hugging Face cache that stands in for the Hub, laid out as `hf download` leaves one.

    HF_HOME/hub/<models|datasets>--<org>--<name>/
        blobs/<sha256 of an LFS file | git blob sha1 of a small one>
        snapshots/<commit>/<path>   -> ../../blobs/<hash>   (relative symlinks)
        refs/main, refs/refs/pr/70  (the commit each revision pointed at when downloaded)

It holds `microsoft/Phi-4-multimodal-instruct` with the tiny model of `builtin:tiny` (written by
pronounce.model.tiny) in the native layout on `refs/pr/70` and the same model in the remote-code
layout (`phi4mm`, written by test_convert.to_main_layout) on `main`, and
`mispeech/speechocean762` with the bundled corpus as the dataset repo has it: its card's
`configs` block and features (CARD below, the published card's YAML), the two splits as
`data/{train,test}-00000-of-00001.parquet` with an `audio` column of {bytes, path} and no id
column. Tests point HF_HOME at it and set HF_HUB_OFFLINE=1: no test reaches the Hub.
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

MODEL_ID = "microsoft/Phi-4-multimodal-instruct"
DATASET_ID = "mispeech/speechocean762"
ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "data" / "speechocean762-mini"
LFS_SUFFIXES = (".safetensors", ".parquet")  # stored by git-lfs on the Hub: blob named by sha256

# The published card's YAML front matter (mispeech/speechocean762, README.md), sizes aside.
CARD = """---
language:
- en
license: apache-2.0
size_categories:
- 1K<n<10K
task_categories:
- automatic-speech-recognition
pretty_name: speechocean762
tags:
- pronunciation-scoring
- arxiv:2104.01378
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: test
    path: data/test-*
dataset_info:
  features:
  - name: accuracy
    dtype: int64
  - name: completeness
    dtype: float64
  - name: fluency
    dtype: int64
  - name: prosodic
    dtype: int64
  - name: text
    dtype: string
  - name: total
    dtype: int64
  - name: words
    list:
    - name: accuracy
      dtype: int64
    - name: phones
      sequence: string
    - name: phones-accuracy
      sequence: float64
    - name: stress
      dtype: int64
    - name: text
      dtype: string
    - name: total
      dtype: int64
    - name: mispronunciations
      list:
      - name: canonical-phone
        dtype: string
      - name: index
        dtype: int64
      - name: pronounced-phone
        dtype: string
  - name: speaker
    dtype: string
  - name: gender
    dtype: string
  - name: age
    dtype: int64
  - name: audio
    dtype: audio
---

# speechocean762: A non-native English corpus for pronunciation scoring task (stand-in)
"""


def _blob_name(path: str, data: bytes) -> str:
    if path.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's object id


def put_snapshot(hub_dir: Path, repo_id: str, files: dict, refs=("main",), repo_type: str = "model") -> str:
    """Add one commit of `repo_id` holding `files` (repo path -> bytes) to the cache at `hub_dir`
    (HF_HOME/hub) and point `refs` at it; the commit's id is derived from the content."""
    repo = hub_dir / f"{repo_type}s--{repo_id.replace('/', '--')}"
    listing = sorted((p, _blob_name(p, data)) for p, data in files.items())
    commit = hashlib.sha1(json.dumps([repo_id, listing]).encode()).hexdigest()
    for (path, blob), data in zip(listing, (files[p] for p, _ in listing)):
        target = repo / "blobs" / blob
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_bytes(data)
        link = repo / "snapshots" / commit / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(target, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
    return commit


def _folder_files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def model_files(seed: int = 1234) -> tuple[dict, dict]:
    """(native layout's files, remote-code layout's files) of the tiny model of `builtin:tiny`."""
    sys.path.insert(0, str(Path(__file__).parent / "model"))  # tests/model/test_convert.py's inverse mapping
    from test_convert import to_main_layout

    from pronounce.model.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        native = build_tiny_model(Path(tmp) / "native", seed)
        main = to_main_layout(native, Path(tmp) / "main")
        return _folder_files(native), _folder_files(main)


def dataset_files(release: Path = BUNDLED) -> dict:
    """The dataset repo's files for a release-layout corpus: the card, the .gitattributes and one
    parquet file per split in the card's schema (rows in another order than the release's)."""
    import datasets
    import yaml

    features = datasets.Features._from_yaml_list(yaml.safe_load(CARD.split("---")[1])["dataset_info"]["features"])
    scores = json.loads((release / "resource" / "scores.json").read_text())
    files = {"README.md": CARD.encode(), ".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}
    with tempfile.TemporaryDirectory() as tmp:
        for split in ("train", "test"):
            kaldi = {name: dict(line.split(maxsplit=1) for line in (release / split / name).read_text().splitlines())
                     for name in ("wav.scp", "utt2spk", "spk2age", "spk2gender")}
            rows = []
            for utt, wav in kaldi["wav.scp"].items():
                s, spk = scores[utt], kaldi["utt2spk"][utt]
                words = [{**{k: w[k] for k in ("accuracy", "phones-accuracy", "stress", "text", "total")},
                          "phones": w["phones"].split(), "mispronunciations": w.get("mispronunciations", [])}
                         for w in s["words"]]
                rows.append({**{k: s[k] for k in ("accuracy", "completeness", "fluency", "prosodic", "text", "total")},
                             "words": words, "speaker": spk, "gender": kaldi["spk2gender"][spk],
                             "age": int(kaldi["spk2age"][spk]),
                             "audio": {"bytes": (release / wav.strip()).read_bytes(), "path": f"{utt}.wav"}})
            path = Path(tmp) / f"{split}.parquet"
            # Built with audio as a plain {bytes, path} struct, then cast to the card's Audio(): casting
            # stores the bytes as they are (encoding through Audio would need torchcodec).
            plain = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
            ds = datasets.Dataset.from_list(rows[::-1], features=datasets.Features({**features, "audio": plain}))
            ds.cast_column("audio", features["audio"]).to_parquet(str(path))
            files[f"data/{split}-00000-of-00001.parquet"] = path.read_bytes()
    return files


def build_cache(hf_home: Path, model: bool = True, dataset: bool = True, seed: int = 1234) -> dict:
    """Fill HF_HOME `hf_home` as `hf download` would; returns the commits by name."""
    hub = Path(hf_home) / "hub"
    commits = {}
    if model:
        native, main = model_files(seed)
        commits["model_main"] = put_snapshot(hub, MODEL_ID, main, refs=("main",))
        commits["model_pr70"] = put_snapshot(hub, MODEL_ID, native, refs=("refs/pr/70",))
    if dataset:
        commits["dataset"] = put_snapshot(hub, DATASET_ID, dataset_files(), refs=("main",), repo_type="dataset")
    return commits


def copy_cache(src: Path, dst: Path) -> Path:
    """A copy of a built cache (symlinks kept as links), to break in one test."""
    shutil.copytree(src, dst, symlinks=True)
    return dst
