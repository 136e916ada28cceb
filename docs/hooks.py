"""mkdocs hook: the params reference page is generated from the typed params at every build
(pronounce.core.params_doc), so it cannot drift from the code or from params.yaml."""

from pathlib import Path

from mkdocs.structure.files import File

from pronounce.core.params_doc import reference

ROOT = Path(__file__).resolve().parents[1]


def on_files(files, config):
    files.append(File.generated(config, "reference/params.md", content=reference(ROOT / "params.yaml")))
    return files
