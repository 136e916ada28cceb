"""`pronounce assess`: score your own recordings with a trained adapter.

- api     the Python API: an Assessor loads an adapter once and assesses recordings
- cli     the command line
- report  one result per recording, as a table, JSON lines or HTML
- words   the expected text's canonical phones and what was said differently
"""

from .._face import lazy

_FACE = {
    "api": ["Assessor", "Recording", "AssessError", "find_adapter", "read_manifest"],
    "report": ["result", "render_table", "render_html", "to_jsonl"],
}
__all__, __getattr__, __dir__ = lazy(__name__, _FACE)
