"""The README and the docs site: the site builds with `mkdocs build --strict` (every internal link
and anchor resolves), the README stays a front door of one screen's worth whose links land in the
repository, nothing points outside the repository, and the params reference is the code's."""

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from pronounce.core.params_doc import reference

DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's anchor as GitHub and mkdocs' toc both make it (lower case, punctuation
    dropped, spaces to hyphens)."""
    text = re.sub(r"[`*_]", "", heading.strip().lstrip("#").strip()).lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {slug(line) for line in re.sub(r"```.*?```", "", text, flags=re.S).splitlines() if line.startswith("#")}


def markdown_files():
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_the_site_builds_strictly(tmp_path):
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    page = re.sub(r"<[^>]+>", "", (tmp_path / "site" / "real-run" / "index.html").read_text(encoding="utf-8"))
    assert "hf download microsoft/Phi-4-multimodal-instruct --revision refs/pr/70" in page  # the README's block


def test_the_readme_is_one_screen_and_its_links_land():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        resolved = (ROOT / path).resolve()
        assert resolved.is_relative_to(ROOT) and resolved.exists(), f"README links to {target}: not in the repository"
        if anchor:
            assert anchor in anchors(resolved), f"README links to {target}: no such heading"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_nothing_points_outside_the_repository_or_speaks_of_how_it_was_built(path):
    text = path.read_text(encoding="utf-8")
    assert "../shared" not in text
    for target in LINK.findall(text):
        if not target.startswith(("http://", "https://", "#", "mailto:")):
            assert (path.parent / target.partition("#")[0]).resolve().is_relative_to(ROOT), target
    words = re.findall(r"when a GPU is lent|this session|in a session|issue \d+|issues? §", text, flags=re.I)
    assert not words, f"{path.name} speaks of how the project is built: {words}"


def test_the_params_reference_is_generated_from_the_code():
    page = (DOCS / "reference" / "params.md").read_text(encoding="utf-8")
    assert page == reference(ROOT / "params.yaml"), (
        "docs/reference/params.md is stale: python -m pronounce.core.params_doc > docs/reference/params.md")
