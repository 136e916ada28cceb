import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "data" / "speechocean762-mini"


def pytest_collection_modifyitems(config, items):
    """`fullsize` tests (the real model's size: ~18 GiB and minutes) run only when selected by
    name (`-m fullsize`) or with PRONOUNCE_FULLSIZE=1; `-m "not slow"` or no -m skips them."""
    import os

    if "fullsize" in (config.getoption("-m") or "").replace("not fullsize", "") or os.environ.get("PRONOUNCE_FULLSIZE") == "1":
        return
    skip = pytest.mark.skip(reason="full size: select with -m fullsize or PRONOUNCE_FULLSIZE=1")
    for item in items:
        if item.get_closest_marker("fullsize"):
            item.add_marker(skip)


@pytest.fixture
def corpus_copy(tmp_path) -> Path:
    """A writable copy of the bundled corpus, to break in a test."""
    dst = tmp_path / "corpus"
    shutil.copytree(BUNDLED, dst)
    return dst


def raw_params() -> dict:
    """params.yaml as YAML gives it: a test edits this dict, then builds the typed params with
    pronounce.core.params.parse_params, which validates the edit as load_params would."""
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def sh(*args, cwd) -> str:
    """Run a command (an argument list) in `cwd`; its output, or a failure showing the output's end."""
    run = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)
    assert run.returncode == 0, f"{' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout + run.stderr


def repo_copy(dst: Path, edit_params=None, keep_run=False) -> Path:
    """A git repository at `dst` holding the working tree (tracked and untracked, not ignored)
    without the outputs of a previous run (dvc.lock, dvclive/, metrics/, scores/) unless
    `keep_run`, params.yaml first changed by `edit_params(params)` if given."""
    import yaml

    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    for output in () if keep_run else ("dvc.lock", "dvclive", "metrics", "scores"):
        path = dst / output
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if edit_params is not None:
        params = yaml.safe_load((dst / "params.yaml").read_text())
        edit_params(params)
        (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=dst)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A", cwd=dst)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy", cwd=dst)
    return dst


def training_workspace(ws: Path, n_instances: int = 16) -> Path:
    """`ws` with the bundled corpus decoded, the tiny base model built (seed 1234, as params.yaml)
    and the instances materialized, the training split cut to its first `n_instances` rows (8
    utterances x 2 tasks by default), so a training run takes seconds."""
    import pyarrow as pa

    from pronounce.core.artifacts import read_arrow
    from pronounce.data.decode import run_decode
    from pronounce.model.base import run_base
    from pronounce.model.processor import load_processor
    from pronounce.task.materialize import run_materialize

    run_decode(str(BUNDLED), ws / "decoded", 30.0, 0.0, progress=False)
    run_base("builtin:tiny", None, 1234, ws / "base")
    run_materialize(ws / "decoded", ws / "materialized", load_processor(ws / "base").audio_token, progress=False)
    table = read_arrow(ws / "materialized/train.arrow").slice(0, n_instances)
    with pa.OSFile(str(ws / "slice.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    (ws / "slice.arrow").replace(ws / "materialized/train.arrow")  # a new inode: the mmap stays valid
    return ws
