"""The corpus: speechocean762 (or a synthetic corpus of its layout) as typed, validated records.

- corpus     either form of the corpus -> typed entries; rejects named with their reason
- hub_dataset  hf:<id>[@<revision>]: a Hub dataset from the cache's parquet files (offline too)
- corpus_pin  stage `corpus`: data.corpus pinned (a dataset commit, a folder digest) for decode
- jsonindex  resource/scores.json indexed instead of loaded
- audio      any audio file -> 16 kHz mono PCM, validated; decoded clips read back by row
- phones     canonical and pronounced phone sequences of an utterance
- decode     stage `decode`: corpus -> data/decoded
- synthetic  a corpus whose right answers are a function of the audio (the learnability check)
"""

from .._face import lazy

_FACE = {
    "corpus": ["Entry", "Reject", "read_corpus", "detect_form"],
    "audio": ["SAMPLE_RATE", "AudioError", "AudioStore", "decode_audio"],
    "phones": ["ARPABET", "UNKNOWN", "canonical_sequence", "pronounced_sequence", "normalise_phone"],
    "decode": ["run_decode"],
    "hub_dataset": ["load_hub_dataset", "parse_hf"],
    "corpus_pin": ["pin_corpus", "pinned_corpus", "dvc_status"],
    "synthetic": ["write_synthetic_corpus"],
}
__all__, __getattr__, __dir__ = lazy(__name__, _FACE)
