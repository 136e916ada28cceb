import contextlib
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "data" / "speechocean762-mini"


# The modules that take minutes, longest first (CPU seconds of each, measured on 2 cores): run
# before the rest, so that under xdist (`-n auto --dist loadscope`) the longest start first and
# the quick modules fill in around them, instead of the longest starting last and running alone.
LONGEST_FIRST = ("pipeline/test_pipeline.py",  # ~170 s (and the test run's pipeline_cache, ~30 s)
                 "pipeline/test_learnability.py",  # ~145 s in two processes
                 "pipeline/test_real_run.py",  # ~300 s: the README's recipe, 3 configs x 4 epochs
                 "checks/test_fullsize.py",  # ~75 s
                 "pipeline/test_bench.py")  # ~60 s


def _longest_first(item) -> int:
    path = item.nodeid.split("::")[0]
    return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith(name)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(config, items):
    """The longest modules first (LONGEST_FIRST), the rest in their order. `fullsize` tests (the
    real model's size: ~18 GiB and minutes) run only when selected by name (`-m fullsize`) or with
    PRONOUNCE_FULLSIZE=1; `-m "not slow"` or no -m skips them."""
    items.sort(key=_longest_first)  # stable: each module's tests keep their order
    if "fullsize" in (config.getoption("-m") or "").replace("not fullsize", "") or os.environ.get("PRONOUNCE_FULLSIZE") == "1":
        return
    skip = pytest.mark.skip(reason="full size: select with -m fullsize or PRONOUNCE_FULLSIZE=1")
    for item in items:
        if item.get_closest_marker("fullsize"):
            item.add_marker(skip)


# ------------------------------------------------------------------ built once per test run
# What many modules read (the tiny base, the decoded bundle, the training slice, one trained
# adapter) is built once per `pytest` run and shared, read-only, by every test and every xdist
# worker (they take turns under a file lock; the first builds, the others wait and reuse). A test
# that writes copies what it needs into its own tmp_path.


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def shared(tmp_path_factory, name: str, build) -> Path:
    """`build(path)` once per run (all xdist workers together), then `path` for everyone."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    path = root / "shared" / name
    with _locked(path):
        if not (path.parent / f"{name}.done").is_file():
            shutil.rmtree(path, ignore_errors=True)
            build(path)
            (path.parent / f"{name}.done").touch()
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """models/base as the base stage builds it for params.yaml (builtin:tiny, seed 1234)."""
    from pronounce.model.base import run_base

    return shared(tmp_path_factory, "base", lambda p: run_base("builtin:tiny", None, 1234, p))


@pytest.fixture(scope="session")
def decoded_bundle(tmp_path_factory) -> Path:
    """data/decoded of the bundled corpus."""
    from pronounce.data.decode import run_decode

    return shared(tmp_path_factory, "decoded", lambda p: run_decode(str(BUNDLED), p, 30.0, 0.0, progress=False))


@pytest.fixture(scope="session")
def training_ws(tmp_path_factory, tiny_base, decoded_bundle) -> Path:
    """training_workspace's layout (base, decoded, materialized cut to 16 instances), built once."""
    return shared(tmp_path_factory, "training", lambda p: training_workspace(p, base=tiny_base, decoded=decoded_bundle))


# The short recipe the training tests share: 2 epochs of batch 4 on the 16-instance slice (8 steps).
SHORT_RECIPE = {"epochs": 2, "batch_size": 4, "logging_steps": 1, "learning_rate": 3e-3}


def short_params() -> dict:
    raw = raw_params()
    raw["train"]["recipes"]["smoke"].update(SHORT_RECIPE)
    raw["train"]["profile"] = "smoke"
    return raw


@pytest.fixture(scope="session")
def trained_r64(tmp_path_factory, training_ws) -> Path:
    """paper_r64 trained once with SHORT_RECIPE on training_ws: the folder holding model/ (the
    adapter, epoch-1, epoch-2, processor), live/ (its DVCLive log) and timing.json."""
    def build(out):
        import json

        import torch

        from pronounce.core.params import parse_params
        from pronounce.training.train import run_train

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            timing = run_train(parse_params(short_params()).train_job("paper_r64"), training_ws / "base",
                               training_ws / "decoded", training_ws / "materialized", out / "model", out / "live",
                               runs_dir=out / "runs")
        finally:
            torch.set_num_threads(threads)
        (out / "timing.json").write_text(json.dumps(timing))
    return shared(tmp_path_factory, "trained_r64", build)


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


def repo_copy(dst: Path, edit_params=None, keep_run=False, cache: Path | None = None) -> Path:
    """A git repository at `dst` holding the working tree (tracked and untracked, not ignored)
    without the outputs of a previous run (dvc.lock, dvclive/, metrics/, scores/) unless
    `keep_run`, params.yaml first changed by `edit_params(params)` if given. `cache`: a DVC cache
    folder to use (`dvc cache dir --local`, so no tracked file changes), e.g. the test run's
    pipeline_cache, whose run cache restores the stages another copy already ran."""
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
    if cache is not None:
        sh("dvc", "cache", "dir", "--local", str(cache), cwd=dst)
    return dst


@pytest.fixture(scope="session")
def pipeline_cache(tmp_path_factory) -> Path:
    """A DVC cache whose run cache holds the default pipeline's first stages (decode, base,
    materialize, evaluate_base: what no params edit of the pipeline tests touches), run once in
    a scratch copy. A copy made with `repo_copy(..., cache=pipeline_cache)` restores them from
    it ("Stage ... is cached") instead of running them again."""
    def build(cache: Path):
        work = cache.parent / "pipeline-prefix"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        sh("dvc", "repro", "evaluate_base", cwd=repo_copy(work / "repo", short_answers, cache=cache))
    return shared(tmp_path_factory, "dvc-cache", build)


def short_answers(params: dict) -> None:
    """The pipeline tests' generations cut at 32 new tokens (an APA answer is ~20): their briefly
    trained adapters and the untrained base run on to the cut, and at the default 160 generation
    was most of those tests' time. The same in every pipeline test, so evaluate_base is shared."""
    params["eval"]["max_new_tokens"] = 32


def training_workspace(ws: Path, n_instances: int = 16, base: Path | None = None, decoded: Path | None = None) -> Path:
    """`ws` with the bundled corpus decoded, the tiny base model built (seed 1234, as params.yaml)
    and the instances materialized, the training split cut to its first `n_instances` rows (8
    utterances x 2 tasks by default), so a training run takes seconds. `base` and `decoded`:
    already built ones, copied instead of built again (the test run's tiny_base, decoded_bundle)."""
    import pyarrow as pa

    from pronounce.core.artifacts import read_arrow
    from pronounce.data.decode import run_decode
    from pronounce.model.base import run_base
    from pronounce.model.processor import load_processor
    from pronounce.task.materialize import run_materialize

    if decoded is None:
        run_decode(str(BUNDLED), ws / "decoded", 30.0, 0.0, progress=False)
    else:
        shutil.copytree(decoded, ws / "decoded")
    if base is None:
        run_base("builtin:tiny", None, 1234, ws / "base")
    else:
        shutil.copytree(base, ws / "base")
    run_materialize(ws / "decoded", ws / "materialized", load_processor(ws / "base").audio_token, progress=False)
    table = read_arrow(ws / "materialized/train.arrow").slice(0, n_instances)
    with pa.OSFile(str(ws / "slice.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    (ws / "slice.arrow").replace(ws / "materialized/train.arrow")  # a new inode: the mmap stays valid
    return ws
