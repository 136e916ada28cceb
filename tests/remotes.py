"""Real DVC remotes for the tests of sharing a run (docs/reproducibility.md, "Share a run"): a folder, and an S3
endpoint on localhost (moto's standalone server, started and stopped here; loopback only).

The stand-in differs from a team's storage only in where it lives: the folder remote is the
docs' "local or network folder" itself; the S3 one is the same `dvc-s3` client talking S3 to
moto instead of AWS or MinIO (moto keeps objects in memory and checks no signature)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, repo_copy, sh

from pronounce.data.corpus_pin import dvc_status

# Tests that need the outputs of the workspace's own `dvc repro` (the embedded default, run once
# by CI before it runs them): they share that run instead of running the pipeline again.
REQUIRE_ENV = "PRONOUNCE_REQUIRE_PIPELINE_OUTPUTS"  # set by .ci/run: missing outputs fail, not skip

S3_BUCKET = "pronounce"


@functools.cache
def _unreproduced_reason() -> str | None:
    """Why the workspace's run cannot be shared (None when `dvc status` is clean); asked once a session."""
    status = dvc_status(ROOT)  # the corpus stage's "always changed" counts only if its pin moved
    if not status:
        return None
    return ("needs the workspace's pipeline outputs (run `dvc repro` first; .ci/run runs these tests after it); "
            f"`dvc status` is not clean: {json.dumps(status)[:300]}")


def reproduced_workspace_or_skip() -> Path:
    """The repository root when its `dvc status` is clean (every output of dvc.lock present);
    otherwise a skip naming why (a failure when REQUIRE_ENV is set: CI has just reproduced)."""
    reason = _unreproduced_reason()
    if reason and os.environ.get(REQUIRE_ENV):
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    return ROOT


def published_run(dst: Path) -> Path:
    """The workspace's run as the author would publish it: a git repository at `dst` holding the
    working tree with its dvc.lock and git-tracked outputs, its DVC cache the workspace's own
    (read by `dvc push`, never written: the outputs are in it already)."""
    repo_copy(dst, keep_run=True)
    cache = sh("dvc", "cache", "dir", cwd=ROOT).strip().splitlines()[-1]
    sh("dvc", "cache", "dir", "--local", str((ROOT / cache).resolve()), cwd=dst)
    return dst


def add_remote(repo: Path, url: str, endpoint: str | None = None, commit_only: str | None = None) -> None:
    """The docs' two lines (the second for S3-compatible storage only), committed (only the
    path `commit_only` if given: the rest of the working tree stays as it is)."""
    sh("dvc", "remote", "add", "-d", "storage", url, cwd=repo)
    if endpoint:
        sh("dvc", "remote", "modify", "storage", "endpointurl", endpoint, cwd=repo)
    what = ["--", commit_only] if commit_only else ["-a"]
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "remote", *what, cwd=repo)


def clone(src: Path, dst: Path) -> Path:
    """A teammate's fresh clone (git only: no outputs, an empty cache)."""
    sh("git", "clone", "-q", str(src), str(dst), cwd=src.parent)
    return dst


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3(tmp: Path):
    """An S3 endpoint at http://127.0.0.1:<port> with bucket S3_BUCKET; yields the endpoint, with
    the environment dvc's S3 client reads set for as long as it runs."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp / "moto.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start: {(tmp / 'moto.log').read_text()[-2000:]}")
                time.sleep(0.2)
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=S3_BUCKET)
        with pytest.MonkeyPatch.context() as env:  # what dvc reads: fake credentials, no ~/.aws files
            for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                               "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
                               "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials")}.items():
                env.setenv(key, value)
            yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
