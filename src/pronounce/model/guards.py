"""Checks that the model and its processor agree, run before any training or generation.

A mismatch here does not fail by itself: the model looks for ``audio_config.audio_token_id``
in ``input_ids`` to place the audio embeddings, so a processor that writes another id as its
placeholder gets text-only generations (the audio is silently ignored) and a "trained" adapter
that never heard a clip. Hence an error before the first step, with the fix in the message.
"""

from __future__ import annotations

from ..core.errors import PipelineError


class AudioTokenMismatch(PipelineError):
    """The processor's audio placeholder id is not the one the model replaces with audio."""


def _audio_config(model_or_config):
    config = getattr(model_or_config, "config", model_or_config)  # a model, a PeftModel or a config
    audio = getattr(config, "audio_config", None)
    if audio is None:
        raise AudioTokenMismatch(
            f"{type(config).__name__} has no audio_config: the base model is not Phi-4-multimodal in "
            "transformers' native layout (model_type phi4_multimodal)"
        )
    return audio


def check_audio_token(model_or_config, processor) -> int:
    """Raise AudioTokenMismatch unless ``processor.audio_token_id`` equals the model's
    ``config.audio_config.audio_token_id``; return the id."""
    model_id = getattr(_audio_config(model_or_config), "audio_token_id", None)
    proc_id = getattr(processor, "audio_token_id", None)
    if model_id is None or proc_id is None or int(model_id) != int(proc_id):
        token = getattr(processor, "audio_token", None)
        raise AudioTokenMismatch(
            f"processor.audio_token_id is {proc_id} ({token!r}) but model.config.audio_config.audio_token_id "
            f"is {model_id}: the model would ignore the audio; load the processor from the same base model "
            "folder/revision as the model (pronounce.model.processor.load_processor)"
        )
    return int(model_id)
