"""Stage outputs are linked from the DVC cache, not copied (.dvc/config `cache.type`), so every
model is on disk once. The `decode` stage (seconds) in a copy of the repository stands in for
every stage: DVC links outputs the same way whatever wrote them."""

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import yaml
from conftest import repo_copy, sh

pytestmark = pytest.mark.slow  # a stage reproduced several times, each dvc command a few seconds

STAGE, OUTPUT = "decode", "data/decoded"


def cache_objects(repo: Path, cache: Path, output: str = OUTPUT) -> dict[str, Path]:
    """The cache object of each file of a folder output, by its path in the workspace."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    md5 = next(o["md5"] for s in lock["stages"].values() for o in s.get("outs", []) if o["path"] == output)
    obj = lambda m: cache / "files" / "md5" / m[:2] / m[2:]  # noqa: E731  DVC's object layout
    return {repo / output / e["relpath"]: obj(e["md5"]) for e in json.loads(obj(md5).read_text())}


def link_kinds(repo: Path, cache: Path) -> set[str]:
    """How each file of the output reaches its cache object: hardlink, symlink or copy."""
    kinds = set()
    for path, obj in cache_objects(repo, cache).items():
        if path.is_symlink():
            kinds.add("symlink" if path.resolve() == obj.resolve() else "symlink elsewhere")
        else:
            kinds.add("hardlink" if path.samefile(obj) else "copy")
    return kinds


def assert_cache_intact(cache: Path) -> None:
    """Every file object still holds what its name (its md5) says: no stage wrote through a link."""
    for obj in (cache / "files" / "md5").rglob("*"):
        if obj.is_file() and not obj.name.endswith(".dir"):
            assert hashlib.md5(obj.read_bytes()).hexdigest() == obj.parent.name + obj.name, obj


def test_outputs_are_hard_links_to_the_cache_and_stages_still_rewrite_them(tmp_path):
    repo = repo_copy(tmp_path / "repo")
    cache = repo / ".dvc" / "cache"
    sh("dvc", "repro", STAGE, cwd=repo)
    objects = cache_objects(repo, cache)
    assert link_kinds(repo, cache) == {"hardlink"}
    assert all(p.stat().st_nlink == 2 for p in objects)
    # read-only: DVC protects what it links, so nothing can edit the cache through the workspace
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o222 == 0 for p in objects)
    # on disk once: the workspace and the cache together hold each byte of the output once
    inodes = {(p.stat().st_dev, p.stat().st_ino): p.stat().st_size for p in [*objects, *objects.values()]}
    assert sum(inodes.values()) == sum(p.stat().st_size for p in objects)

    # A forced rerun rewrites the read-only, linked output (DVC removes it first; the stage writes
    # a new folder). Its files come out byte-identical, already in the cache: DVC leaves those
    # as written (with `copy` in cache.type it takes a plain file for linked), and
    # `dvc checkout --relink` links them.
    sh("dvc", "repro", "-f", STAGE, cwd=repo)
    assert link_kinds(repo, cache) == {"copy"}
    sh("dvc", "checkout", "--relink", STAGE, cwd=repo)
    assert link_kinds(repo, cache) == {"hardlink"}
    assert "up to date" in sh("dvc", "status", STAGE, cwd=repo)

    # `dvc checkout` restores a deleted output as links
    shutil.rmtree(repo / OUTPUT)
    sh("dvc", "checkout", STAGE, cwd=repo)
    assert link_kinds(repo, cache) == {"hardlink"}

    # `dvc exp run` reruns the stage over its linked output (another max_seconds: same clips kept)
    sh("git", "add", "dvc.lock", cwd=repo)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run", cwd=repo)
    sh("dvc", "exp", "run", STAGE, "-S", "data.max_seconds=29.0", cwd=repo)
    sh("dvc", "checkout", "--relink", STAGE, cwd=repo)
    assert link_kinds(repo, cache) == {"hardlink"}
    assert_cache_intact(cache)


def _other_filesystem(tmp_path: Path) -> Path:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no writable folder on another filesystem than the test's (/dev/shm)")
    return Path(os.path.realpath(shm))


def test_a_cache_where_hard_links_cannot_reach_falls_back_to_symlinks_then_copies(tmp_path):
    other = _other_filesystem(tmp_path)
    repo = repo_copy(tmp_path / "repo")
    cache = other / f"pronounce-cache-test-{os.getpid()}-{tmp_path.name}"
    try:
        sh("dvc", "cache", "dir", str(cache), cwd=repo)  # a hard link cannot cross filesystems
        sh("dvc", "repro", STAGE, cwd=repo)
        sh("dvc", "checkout", "--relink", STAGE, cwd=repo)
        assert link_kinds(repo, cache) == {"symlink"}
        # and without symlinks in the list (a filesystem that has neither), copies
        sh("dvc", "config", "cache.type", "hardlink,copy", cwd=repo)
        sh("dvc", "checkout", "--relink", STAGE, cwd=repo)
        assert link_kinds(repo, cache) == {"copy"}
        assert "up to date" in sh("dvc", "status", STAGE, cwd=repo)
        assert_cache_intact(cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
