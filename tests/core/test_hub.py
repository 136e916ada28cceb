"""The Hugging Face side of the real run, offline first (pronounce.core.hub, data.hub_dataset, data.corpus_pin),
against a cache laid out as `hf download` leaves one (tests/hf_cache.py), never the Hub.

"Nothing calls the Hub" is checked with the Hub reachable: HF_ENDPOINT is a local server that
answers as the Hub does and records every request, so a request our code should not make is
seen, not merely failed. Failures the Hub causes (wrong id, wrong revision, gated repo) come from
that server with the Hub's own error headers, through huggingface_hub's own error mapping.
"""

import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ROOT
from hf_cache import DATASET_ID, MODEL_ID, build_cache, copy_cache, put_snapshot

from pronounce.core import hub
from pronounce.core.errors import CorpusError

FAKE_SHA = "f" * 40


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf") / "home"
    return home, build_cache(home)


class FakeHub(http.server.BaseHTTPRequestHandler):
    """The Hub's repo-info API: `nobody/*` is not found, `gated/*` gated, revision `no-such`
    not found, anything else at commit FAKE_SHA. Requests are recorded on the server."""

    def do_GET(self):
        self.server.requests.append(self.path)
        parts = self.path.split("?")[0].split("/")  # /api/<models|datasets>/<org>/<name>[/revision/<rev>]
        if len(parts) < 5 or parts[2] not in ("models", "datasets"):  # e.g. huggingface_hub's agent registry
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        org, rev = parts[3], parts[6] if len(parts) > 6 else "main"
        status, code = ((404, "RepoNotFound") if org == "nobody" else (403, "GatedRepo") if org == "gated"
                        else (404, "RevisionNotFound") if rev == "no-such" else (200, None))
        body = json.dumps({"id": f"{parts[3]}/{parts[4]}", "sha": FAKE_SHA, "siblings": []}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_hub(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    # huggingface_hub and transformers read these when imported: whatever reaches them goes here too
    import huggingface_hub.constants as C

    monkeypatch.setattr(C, "ENDPOINT", url)
    monkeypatch.setattr(C, "HF_HUB_OFFLINE", False)
    yield server
    server.shutdown()


@pytest.fixture
def online(monkeypatch, built, fake_hub):
    """The stand-in cache as HF_HOME, the Hub reachable (the fake one): the server's requests say
    what our code asked."""
    monkeypatch.setenv("HF_HOME", str(built[0]))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return fake_hub


@pytest.fixture
def offline(monkeypatch, built):
    import huggingface_hub.constants as C

    monkeypatch.setenv("HF_HOME", str(built[0]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(C, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(C, "ENDPOINT", "http://127.0.0.1:9")
    return built[1]


def env(home, **extra) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    return {**e, "HF_HOME": str(home), **extra}


# -- the stand-in is what `hf download` leaves ------------------------------------------

def test_the_stand_in_cache_is_read_by_huggingface_hub_as_its_own(built):
    home, commits = built
    out = subprocess.run([sys.executable, "-c", (
        "import json; from huggingface_hub import scan_cache_dir\n"
        "print(json.dumps({r.repo_id + ':' + r.repo_type: {rv.commit_hash: sorted(rv.refs) for rv in r.revisions}"
        " for r in scan_cache_dir().repos}))")], env=env(home), capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {
        f"{MODEL_ID}:model": {commits["model_main"]: ["main"], commits["model_pr70"]: ["refs/pr/70"]},
        f"{DATASET_ID}:dataset": {commits["dataset"]: ["main"]}}
    snap = home / "hub" / "models--microsoft--Phi-4-multimodal-instruct" / "snapshots" / commits["model_pr70"]
    link = snap / "speech-lora" / "adapter_model.safetensors"
    assert link.is_symlink() and os.readlink(link).startswith("../../../blobs/")
    import hashlib
    assert Path(os.readlink(link)).name == hashlib.sha256(link.read_bytes()).hexdigest()  # an LFS blob's name
    # The recipe's own commands find everything offline: `hf download` answers from the cache.
    for args in (["hf", "download", MODEL_ID, "--revision", "refs/pr/70"],
                 ["hf", "download", "--repo-type", "dataset", DATASET_ID]):
        run = subprocess.run(args, env=env(home, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9"),
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    assert commits["model_pr70"] in run.stdout or commits["dataset"] in run.stdout


# -- resolution: a commit or a cached revision never reaches the Hub -------------------------

def test_a_commit_or_a_cached_revision_resolves_without_a_request(online, built):
    commits = built[1]
    assert hub.resolve(MODEL_ID, "refs/pr/70") == commits["model_pr70"]
    assert hub.resolve(MODEL_ID, None) == hub.resolve(MODEL_ID, "main") == commits["model_main"]
    assert hub.resolve(DATASET_ID, None, "dataset") == commits["dataset"]
    assert hub.resolve("nobody/anything", "a" * 40) == "a" * 40  # a commit is itself, cached or not
    assert online.requests == []
    # A revision the cache lacks is asked of the Hub, once.
    assert hub.resolve(MODEL_ID, "refs/pr/71") == FAKE_SHA
    assert [r for r in online.requests if r.startswith("/api/models/")] == [
        "/api/models/microsoft/Phi-4-multimodal-instruct/revision/refs%2Fpr%2F71"]


@pytest.mark.parametrize("case", ["offline", "unreachable", "wrong id", "wrong revision", "gated"])
def test_each_hub_failure_is_one_line_naming_the_fix(case, built, fake_hub, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(built[0]))
    repo, revision = {"wrong id": ("nobody/nothing", None), "gated": ("gated/model", None),
                      "wrong revision": (MODEL_ID, "no-such")}.get(case, (MODEL_ID, "refs/pr/71"))
    if case == "offline":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if case == "unreachable":
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(hub.HubError) as e:
        hub.resolve(repo, revision)
    message = str(e.value)
    assert "\n" not in message
    expected = {
        "offline": ["HF_HUB_OFFLINE is set", f"`hf download {MODEL_ID} --revision refs/pr/71`", "HF_HOME",
                    str(built[0] / "hub")],
        "unreachable": ["cannot be reached (ConnectError)", f"`hf download {MODEL_ID} --revision refs/pr/71`",
                        "on a machine with network", "HF_HOME"],
        "wrong id": ["nobody/nothing is not a model repo", "check the id (model.base)"],
        "wrong revision": [f"{MODEL_ID} has no revision 'no-such'", "model.revision", "refs/pr/70"],
        "gated": ["gated/model at revision main is gated", "accept its terms", "hf auth login"],
    }[case]
    assert all(part in message for part in expected), message
    if case == "offline":
        assert fake_hub.requests == []


# -- the model: the base stage and every loader from the cache --------------------------------

def test_the_base_stage_pins_the_cached_native_revision_and_loads_it_without_a_request(online, built, tmp_path):
    import torch
    from safetensors.torch import load_file

    from pronounce.model import base as B
    from pronounce.model import loader as M
    from pronounce.model import manifest as BM
    from pronounce.model.processor import load_processor

    commit = built[1]["model_pr70"]
    manifest = B.run_base(MODEL_ID, None, 1234, tmp_path / "base")
    assert (manifest["revision"], manifest["commit"], manifest["source"]) == ("refs/pr/70", commit, MODEL_ID)
    model = BM.load_base(tmp_path / "base")
    processor = load_processor(*BM.resolve_base(tmp_path / "base"))
    lora = M.speech_lora_path(*BM.resolve_base(tmp_path / "base"))
    assert online.requests == []  # with the Hub reachable, nothing asked of it
    snap = built[0] / "hub" / "models--microsoft--Phi-4-multimodal-instruct" / "snapshots" / commit
    assert lora == snap / "speech-lora"
    cached = load_file(str(snap / "model.safetensors"))
    assert torch.equal(model.state_dict()["model.embed_tokens.weight"], cached["model.embed_tokens.weight"])
    assert processor.audio_token == "<|audio|>"
    # main, the remote-code layout, is refused with the fix, from the cache too.
    with pytest.raises(M.LayoutError, match=r"at revision main .*phi4mm.*refs/pr/70"):
        B.run_base(MODEL_ID, "main", 1234, tmp_path / "main")
    assert online.requests == []


def test_a_snapshot_the_cache_holds_in_part_is_one_line_offline(offline, built, tmp_path, monkeypatch):
    from pronounce.model import loader as M
    from pronounce.model.processor import load_processor

    home = copy_cache(built[0], tmp_path / "home")
    monkeypatch.setenv("HF_HOME", str(home))
    weights = home / "hub" / "models--microsoft--Phi-4-multimodal-instruct" / "snapshots" / offline["model_pr70"]
    (weights / "model.safetensors").unlink()  # as if only config.json had been fetched
    with pytest.raises(hub.HubError, match=rf"only in part .*`hf download {MODEL_ID} --revision refs/pr/70`"):
        M.load_base_model(MODEL_ID)
    load_processor(MODEL_ID)  # what the cache holds still loads


def run_stage(cwd, script, home, **extra):
    return subprocess.run([sys.executable, str(ROOT / "stages" / script), "--out", "out",
                           *(["--tokenizer-corpus", "x"] if script == "base.py" else [])],
                          cwd=cwd, env=env(home, **extra), capture_output=True, text=True)


@pytest.mark.parametrize("case", ["offline", "no network", "pinned commit offline"])
def test_the_base_stage_prints_one_line_without_the_hub(case, tmp_path):
    revision = "0123456789abcdef0123456789abcdef01234567" if case == "pinned commit offline" else None
    params = (ROOT / "params.yaml").read_text().replace("base: builtin:tiny", f"base: {MODEL_ID}")
    (tmp_path / "params.yaml").write_text(params.replace("revision: null", f"revision: {revision or 'null'}"))
    network = {"HF_ENDPOINT": "http://127.0.0.1:9"} if case == "no network" else {"HF_HUB_OFFLINE": "1"}
    run = run_stage(tmp_path, "base.py", tmp_path / "empty-home", **network)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    assert f"hf download {MODEL_ID} --revision {revision or 'refs/pr/70'}" in lines[0], lines[0]
    assert "HF_HOME" in lines[0]


def test_the_preflight_prints_one_line_without_the_hub(tmp_path):
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    preflight = [sys.executable, "-m", "pronounce.checks.preflight"]
    run = subprocess.run([*preflight, "-S", f"model.base={MODEL_ID}"], cwd=tmp_path, capture_output=True,
                         text=True, env=env(tmp_path / "empty-home", HF_HUB_OFFLINE="1"))
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    failed = [line for line in run.stderr.splitlines() if line.startswith("preflight: FAILED")]
    assert len(failed) == 1 and f"hf download {MODEL_ID} --revision refs/pr/70" in failed[0], run.stderr
    bad = subprocess.run([*preflight, "-S", "model.bsae=x"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("preflight: FAILED -S"), bad.stderr


# -- the corpus: hf:<id> from the snapshot's parquet files ---------------------------------------

def test_an_hf_corpus_is_read_offline_from_the_cache_as_the_release_form(offline, monkeypatch):
    import datasets

    from pronounce.data.corpus import read_corpus

    real = datasets.load_dataset

    def parquet_only(path, *a, **kw):  # load_dataset(<hub id>) fails offline: never used
        assert path == "parquet", path
        return real(path, *a, **kw)

    monkeypatch.setattr(datasets, "load_dataset", parquet_only)
    n, hf = read_corpus(f"hf:{DATASET_ID}")
    m, release = read_corpus(str(ROOT / "data" / "speechocean762-mini"))
    hf, release = list(hf), list(release)
    assert n == m == len(hf) == len(release) == 107
    for a, b in zip(hf, release):
        assert (a.utt_id, a.split, a.labels) == (b.utt_id, b.split, b.labels)
        assert a.audio == Path(b.audio).read_bytes()
    # At a revision: the commit itself, or a revision the cache does not hold (one line).
    assert len(list(read_corpus(f"hf:{DATASET_ID}@{offline['dataset']}")[1])) == 107
    with pytest.raises(hub.HubError, match=rf"dataset {DATASET_ID} at revision v2 is not in the cache .*"
                                           rf"`hf download --repo-type dataset {DATASET_ID} --revision v2`"):
        read_corpus(f"hf:{DATASET_ID}@v2")


def test_the_card_configs_name_the_files(offline, built, tmp_path, monkeypatch):
    from hf_cache import CARD

    from pronounce.data.hub_dataset import parse_hf, split_patterns

    assert split_patterns(CARD) == {"train": ["data/train-*"], "test": ["data/test-*"]}
    assert split_patterns("# no front matter") == {"train": ["data/train-*"], "test": ["data/test-*"]}
    assert split_patterns("---\nconfigs:\n- config_name: default\n  data_files:\n    train: a/*.parquet\n"
                          "    test: [b/1.parquet, b/2.parquet]\n---\n") == {
        "train": ["a/*.parquet"], "test": ["b/1.parquet", "b/2.parquet"]}
    assert parse_hf("hf:a/b@refs/pr/3") == ("a/b", "refs/pr/3") and parse_hf("hf:a/b") == ("a/b", None)
    with pytest.raises(CorpusError, match="hf:<org>/<name>"):
        parse_hf("hf:speechocean762")
    # A cache holding the card but not a split's files: one line naming the include to fetch.
    home = copy_cache(built[0], tmp_path / "home")
    monkeypatch.setenv("HF_HOME", str(home))
    snap = home / "hub" / "datasets--mispeech--speechocean762" / "snapshots" / offline["dataset"]
    (snap / "data" / "test-00000-of-00001.parquet").unlink()
    from pronounce.data.corpus import read_corpus

    with pytest.raises(hub.HubError, match=r"without its test files .*--include \"data/test-\*\""):
        read_corpus(f"hf:{DATASET_ID}")


# -- the pin decode depends on ---------------------------------------------------------------

def test_the_pin_is_the_commit_or_the_content(offline, corpus_copy, tmp_path):
    import shutil

    from hf_form import release_to_hf

    from pronounce.data.corpus_pin import pin_corpus

    assert pin_corpus(f"hf:{DATASET_ID}") == {"corpus": f"hf:{DATASET_ID}", "kind": "hf", "id": DATASET_ID,
                                              "commit": offline["dataset"], "digest": None}
    first = pin_corpus(str(corpus_copy))
    assert first["kind"] == "release" and first["digest"].startswith("md5:")
    os.utime(corpus_copy / "resource" / "scores.json", (1, 1))  # a new mtime, the same bytes
    shutil.copytree(corpus_copy, tmp_path / "moved")  # the same files elsewhere
    assert pin_corpus(str(corpus_copy))["digest"] == pin_corpus(str(tmp_path / "moved"))["digest"] == first["digest"]
    wav = next((corpus_copy / "WAVE").rglob("*.WAV"))
    wav.write_bytes(wav.read_bytes()[:-2] + b"\0\1")  # one sample changed
    assert pin_corpus(str(corpus_copy))["digest"] != first["digest"]
    saved = pin_corpus(str(release_to_hf(corpus_copy, tmp_path / "saved")))
    assert saved["kind"] == "save_to_disk" and saved["digest"] not in (None, first["digest"])


@pytest.mark.slow  # dvc repro decode six times (~2 min on 2 shared cores)
def test_decode_reruns_exactly_when_the_pin_changes(built, tmp_path):
    """Through DVC, offline: the commit is written into dvc.lock; a second repro skips decode; a new
    commit of the dataset's branch in the cache, or a changed file of a folder corpus, reruns it."""
    import yaml
    from conftest import repo_copy

    home = copy_cache(built[0], tmp_path / "home")
    repo = repo_copy(tmp_path / "repo")
    e = env(home, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")

    def repro():
        run = subprocess.run(["dvc", "repro", "decode"], cwd=repo, env=e, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        return "Running stage 'decode'" in run.stdout

    def locked():
        return yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["decode"]["params"]["data/corpus.json"]

    assert repro() and locked()["kind"] == "release"
    assert not repro()  # nothing changed: decode skipped
    with open(repo / "data" / "speechocean762-mini" / "README.md", "a") as f:
        f.write("\n")
    assert repro()  # a file of the folder changed
    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("corpus: data/speechocean762-mini", f"corpus: hf:{DATASET_ID}"))
    assert repro() and locked()["commit"] == built[1]["dataset"]
    assert not repro()
    # The branch moves (`hf download` again after an upstream commit): decode follows the new commit.
    from hf_cache import dataset_files

    files = dataset_files()
    files["README.md"] += b"\nA new line in the card.\n"
    moved = put_snapshot(home / "hub", DATASET_ID, files, refs=("main",), repo_type="dataset")
    assert repro() and locked()["commit"] == moved != built[1]["dataset"]
    assert json.loads((repo / "data" / "corpus.json").read_text())["commit"] == moved
