"""The Hugging Face Hub, cache first: what the base stage and the corpus reader ask of it.

A revision resolves to a commit without the network when it can: a 40-hex commit is itself, and
a branch or pull-request ref already in the cache (`hf download` wrote `refs/<revision>`) is the
commit it pointed at then. Only otherwise is the Hub asked. So a GPU node with no network runs
from a cache filled elsewhere (HF_HOME copied, or shared), and a run keeps the commit it was
downloaded at until `hf download` is run again. A snapshot the cache holds whole is read as a
local folder (no request at all, not even the HEAD requests loaders make per file).

Every failure is one HubError line naming the fix: no network and nothing cached, offline mode
(HF_HUB_OFFLINE) with nothing cached, a wrong id, a wrong revision, a gated repo. The cache
location and offline mode are read from the environment at each call (as huggingface_hub reads
them when imported), so a stage and a test see the same cache.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from .errors import PipelineError

COMMIT = re.compile(r"[0-9a-f]{40}")
_TRUE = {"1", "ON", "YES", "TRUE"}


class HubError(PipelineError):
    """The Hub or the cache cannot give what is asked (one line, with the fix)."""


def cache_dir() -> Path:
    """The hub cache, as huggingface_hub.constants computes it: HF_HUB_CACHE, else
    HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub."""
    home = os.getenv("HF_HOME") or os.path.join(os.getenv("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                                "huggingface")
    hub = os.getenv("HF_HUB_CACHE") or os.getenv("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def offline() -> bool:
    return any((os.getenv(v) or "").upper() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def endpoint() -> str:
    return (os.getenv("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def repo_dir(repo_id: str, repo_type: str = "model") -> Path:
    return cache_dir() / f"{repo_type}s--{repo_id.replace('/', '--')}"


def download_command(repo_id: str, revision: str | None, repo_type: str = "model") -> str:
    """The `hf download` line that puts `repo_id` at `revision` into the cache."""
    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    rev = f" --revision {revision}" if revision else ""
    return f"hf download{kind} {repo_id}{rev}"


def _fix(repo_id: str, revision: str | None, repo_type: str) -> str:
    return (f"run `{download_command(repo_id, revision, repo_type)}` on a machine with network and use its "
            f"HF_HOME here (this run reads {cache_dir()})")


def _what(repo_id: str, revision: str | None, repo_type: str) -> str:
    return f"{'dataset ' if repo_type == 'dataset' else ''}{repo_id} at revision {revision or 'main'}"


@contextlib.contextmanager
def hub_errors(repo_id: str, revision: str | None, repo_type: str = "model"):
    """Turn what huggingface_hub raises into one HubError line naming the fix."""
    from huggingface_hub import errors as E

    what = _what(repo_id, revision, repo_type)
    try:
        yield
    except E.OfflineModeIsEnabled:
        raise HubError(f"{what} is not in the cache and HF_HUB_OFFLINE is set: {_fix(repo_id, revision, repo_type)}, "
                       "or unset HF_HUB_OFFLINE on a machine with network") from None
    except E.GatedRepoError:
        raise HubError(f"{what} is gated: accept its terms at {endpoint()}/{'datasets/' if repo_type == 'dataset' else ''}"
                       f"{repo_id} and log in (`hf auth login`) or set HF_TOKEN") from None
    except E.RepositoryNotFoundError:
        raise HubError(f"{repo_id} is not a {repo_type} repo on the Hub ({endpoint()}): check the id "
                       f"({'data.corpus hf:<id>' if repo_type == 'dataset' else 'model.base'}); a private repo "
                       "needs `hf auth login` or HF_TOKEN") from None
    except E.RevisionNotFoundError:
        raise HubError(f"{repo_id} has no revision {revision!r}: set "
                       f"{'data.corpus to hf:<id>@<branch, tag or commit>' if repo_type == 'dataset' else 'model.revision'}"
                       f" to one it has{' (the native layout is on refs/pr/70)' if repo_type == 'model' else ''}") from None
    except E.HfHubHTTPError as e:
        raise HubError(f"the Hub answered {what} with {str(e).splitlines()[0]}") from None
    except Exception as e:  # no route, refused, timed out: httpx's transport errors, OSError's
        if not _network_error(e):
            raise
        raise HubError(f"{what} is not in the cache and the Hub ({endpoint()}) cannot be reached "
                       f"({type(e).__name__}): {_fix(repo_id, revision, repo_type)}") from None


def _network_error(e: BaseException) -> bool:
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    return any(c.__name__ in ("TransportError", "RequestError") for c in type(e).__mro__)


def resolve(repo_id: str, revision: str | None, repo_type: str = "model") -> str:
    """The commit `revision` (None: main) of `repo_id` points at: a commit as is, a revision the
    cache holds from its ref, without the network; else the Hub's answer."""
    rev = revision or "main"
    if COMMIT.fullmatch(rev):
        return rev
    ref = repo_dir(repo_id, repo_type) / "refs" / rev
    if ref.is_file() and COMMIT.fullmatch(commit := ref.read_text(encoding="utf-8").strip()):
        return commit
    if offline():
        raise HubError(f"{_what(repo_id, revision, repo_type)} is not in the cache and HF_HUB_OFFLINE is set: "
                       f"{_fix(repo_id, revision, repo_type)}")
    from huggingface_hub import HfApi

    with hub_errors(repo_id, revision, repo_type):
        sha = HfApi(endpoint=endpoint()).repo_info(repo_id, revision=revision, repo_type=repo_type).sha
    if not sha:
        raise HubError(f"the Hub gave no commit for {_what(repo_id, revision, repo_type)}")
    return sha


def snapshot(repo_id: str, commit: str, repo_type: str = "model") -> Path | None:
    """The cache's folder of `repo_id` at `commit`, or None (it may hold only some files)."""
    folder = repo_dir(repo_id, repo_type) / "snapshots" / commit
    return folder if folder.is_dir() else None


def file_at(repo_id: str, commit: str, filename: str, repo_type: str = "model") -> Path:
    """One file of `repo_id` at `commit`: from the cache, else downloaded into it."""
    folder = snapshot(repo_id, commit, repo_type)
    if folder is not None and (folder / filename).is_file():
        return folder / filename
    if offline():
        raise HubError(f"{_what(repo_id, commit, repo_type)} has no {filename} in the cache and HF_HUB_OFFLINE is "
                       f"set: {_fix(repo_id, commit, repo_type)}")
    from huggingface_hub import hf_hub_download

    with hub_errors(repo_id, commit, repo_type):
        return Path(hf_hub_download(repo_id, filename, revision=commit, repo_type=repo_type,
                                    cache_dir=cache_dir(), endpoint=endpoint()))


def files_at(repo_id: str, commit: str, patterns: list[str], repo_type: str = "model") -> Path:
    """The snapshot folder of `repo_id` at `commit` with the files matching `patterns` downloaded
    when online (the cache's folder as it is when offline: the caller checks what it needs)."""
    folder = snapshot(repo_id, commit, repo_type)
    if offline():
        if folder is None:
            raise HubError(f"{_what(repo_id, commit, repo_type)} is not in the cache and HF_HUB_OFFLINE is set: "
                           f"{_fix(repo_id, commit, repo_type)}")
        return folder
    from huggingface_hub import snapshot_download

    with hub_errors(repo_id, commit, repo_type):
        return Path(snapshot_download(repo_id, revision=commit, repo_type=repo_type, allow_patterns=patterns,
                                      cache_dir=cache_dir(), endpoint=endpoint()))
