"""The base model, tiny or real: loading it natively, building the tiny one, converting a copy.

- loader      the model and its speech LoRA, strictly in the native layout
- processor   its audio-only processor: tokenizer with control tokens, feature extractor
- tiny        builtin:tiny, the real architecture shrunk, built locally
- portable    CPU-independent numbers for building the tiny model
- convert     a local copy of the remote-code layout -> the native one
- audio_mask  a real padding mask for the audio encoder
- guards      model and processor agree, checked before training or generation
- manifest    models/base/base.json: what the base stage recorded
- base        stage `base`: the base model named by model.base -> models/base
"""

from .._face import lazy

_FACE = {
    "loader": ["load_base_model", "load_speech_lora", "speech_lora_path", "real_config",
               "LayoutError"],
    "processor": ["load_processor"],
    "tiny": ["build_tiny_model", "tiny_config"],
    "convert": ["convert_checkpoint"],
    "manifest": ["resolve_base"],
    "base": ["run_base"],
}
__all__, __getattr__, __dir__ = lazy(__name__, _FACE)
