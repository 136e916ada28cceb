"""`pronounce assess`: score your own recordings with a trained adapter.

- api      the Python API: an Assessor loads an adapter once and assesses recordings
- cli      the command line
- report   one result per recording, as a table, JSON lines or HTML, each headed by the model's banner
- words    the expected text's canonical phones and what was said differently
- g2p      g2p-en's shipped model for words CMUdict lacks, run offline
- explain  which model answered (the banner), the rubric band of each score, heard vs expected words,
           an example word for each ARPAbet phone
- serve    `pronounce serve`: the local web page (Gradio, the `serve` extra)
"""

from .._face import lazy

_FACE = {
    "api": ["Assessor", "Recording", "AssessError", "find_adapter", "read_manifest"],
    "report": ["result", "render_table", "render_html", "to_jsonl"],
    "explain": ["model_card"],
}
__all__, __getattr__, __dir__ = lazy(__name__, _FACE)
