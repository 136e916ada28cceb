"""The base model's processor, audio-only: its tokenizer (with the task's control tokens), the
native feature extractor and a stand-in image processor, so torchvision is never needed.
"""

from __future__ import annotations

from transformers.image_processing_base import ImageProcessingMixin

from ..task import prompts
from .loader import has_processor, hub_errors, hub_source, local_folder


class AudioOnlyImageProcessor(ImageProcessingMixin):
    """Stand-in for Phi4MultimodalImageProcessor (which needs torchvision): refuses images."""

    model_input_names: list[str] = []

    def __call__(self, *args, **kwargs):
        raise ValueError("this Phi-4-multimodal processor is audio-only: images are not supported")

    def fetch_images(self, *args, **kwargs):
        raise ValueError("this Phi-4-multimodal processor is audio-only: images are not supported")


def _load_tokenizer(source: str, revision: str | None):
    """The tokenizer, with ``audio_token``/``image_token`` set.

    Tokenizer configs that predate the native port lack these names; they are then derived
    from the model config's ``audio_token_id``/``image_token_id`` (200011/200010 for the real
    model, i.e. ``<|endoftext11|>``/``<|endoftext10|>``).
    """
    from transformers import AutoTokenizer, Phi4MultimodalConfig

    tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    if getattr(tokenizer, "audio_token", None) and getattr(tokenizer, "image_token", None):
        return tokenizer
    config = Phi4MultimodalConfig.from_pretrained(source, revision=revision)
    names = {
        "audio_token": tokenizer.convert_ids_to_tokens(config.audio_config.audio_token_id),
        "image_token": tokenizer.convert_ids_to_tokens(config.vision_config.image_token_id),
    }
    if not all(names.values()):
        raise ValueError(f"could not determine the audio/image placeholder tokens of {source!r}")
    return AutoTokenizer.from_pretrained(source, revision=revision, **names)


def load_processor(base, revision: str | None = None, add_control_tokens: bool = True):
    """An audio-only ``Phi4MultimodalProcessor`` for a local folder (tiny or real) or a Hub id.

    Built from the tokenizer, ``Phi4MultimodalFeatureExtractor`` and a stand-in image
    processor, so torchvision is never needed. ``processor.audio_token`` is the placeholder
    to put in prompts (``<|audio|>`` for the tiny model; the real converted checkpoint names
    its own, ``<|endoftext11|>`` per transformers' conversion script). With
    ``add_control_tokens`` the task tokens ``<|APA|>``/``<|MDD|>`` are made atomic special
    tokens if the tokenizer lacks them (the tiny one has them already; the real one gets two
    new ids, normally inside its padded 200064-row embedding: call ``check_vocab(model,
    processor)``, which resizes only if needed).
    """
    from transformers import Phi4MultimodalFeatureExtractor, Phi4MultimodalProcessor

    local = local_folder(base)
    if local is not None:
        if not (local / "tokenizer_config.json").is_file() and not (local / "tokenizer.json").is_file():
            raise FileNotFoundError(f"base model folder {str(local)!r} has no tokenizer files")
        source, revision = str(local), None
    else:
        source, revision = hub_source(base, revision, has_processor)
    with hub_errors(source, revision):
        tokenizer = _load_tokenizer(source, revision)
        feature_extractor = Phi4MultimodalFeatureExtractor.from_pretrained(source, revision=revision)
    if add_control_tokens:
        missing = [t for t in prompts.CONTROL_TOKENS.values() if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
    image_processor = AudioOnlyImageProcessor()
    processor = Phi4MultimodalProcessor(
        image_processor=image_processor, audio_processor=feature_extractor, tokenizer=tokenizer
    )
    return processor


def check_vocab(model, processor) -> None:
    """Resize the model's token embeddings if the tokenizer has ids beyond them."""
    n = len(processor.tokenizer)
    if n > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(n)


def suppressed_token_ids(processor) -> list[int]:
    """Placeholder ids that generation must never emit (an emitted audio/image placeholder
    would be taken for a media slot on the next forward)."""
    ids = [getattr(processor, "audio_token_id", None), getattr(processor, "image_token_id", None)]
    return [int(i) for i in ids if i is not None]
