import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "data" / "speechocean762-mini"


@pytest.fixture
def corpus_copy(tmp_path) -> Path:
    """A writable copy of the bundled corpus, to break in a test."""
    dst = tmp_path / "corpus"
    shutil.copytree(BUNDLED, dst)
    return dst
