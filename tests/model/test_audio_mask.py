"""audio_mask: a clip encodes the same alone and beside longer clips (transformers 5.24 adds the
audio encoder's padding mask as +1/+0, so without the fix it does not)."""

import numpy as np
import pytest
import torch
from transformers import Phi4MultimodalFeatureExtractor
from transformers.models.phi4_multimodal.modeling_phi4_multimodal import Phi4MultimodalAudioModel

from pronounce.model.audio_mask import mask_audio_padding
from pronounce.model.tiny import tiny_model


def _clips():
    rng = np.random.default_rng(7)
    t = np.arange(16000 * 3) / 16000
    long = (0.1 * np.sin(2 * np.pi * 300 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    short = (0.05 * np.sin(2 * np.pi * 900 * t[:12000]) + 0.01 * rng.standard_normal(12000)).astype(np.float32)
    return short, long


def _encode(encoder, clips):
    """The encoder's output per clip, trimmed to the clip's own tokens."""
    out = Phi4MultimodalFeatureExtractor()(clips, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(out["audio_input_features"], out.get("audio_attention_mask"))
    return [hidden[i, :n] for i, n in enumerate(out["audio_embed_sizes"].tolist())]


def _shift(encoder) -> float:
    """How far the short clip's tokens move when a 3 s clip pads it: max over tokens, relative."""
    short, long = _clips()
    alone = _encode(encoder, [short])[0]
    batched = _encode(encoder, [short, long])[0]
    return float(((batched - alone).norm(dim=-1) / alone.norm(dim=-1).mean()).max())


def _unmasked_tiny():
    """The tiny model with its audio encoder as transformers 5.24 builds it (tiny_model masks it)."""
    model, _ = tiny_model()
    model.model.embed_tokens_extend.audio_embed.encoder.__class__ = Phi4MultimodalAudioModel
    return model


@pytest.fixture(scope="module")
def encoders():
    plain = _unmasked_tiny()
    masked, _ = tiny_model()
    return (plain.model.embed_tokens_extend.audio_embed.encoder,
            masked.model.embed_tokens_extend.audio_embed.encoder)


def test_a_clip_encodes_the_same_beside_a_longer_one(encoders):
    plain, masked = encoders
    # Measured: 0 with the mask (the tiny encoder's layers have no biases, so zeroed padded frames
    # stay zero through its convolutions), 38-55% of the tokens' norm without.
    assert _shift(masked) < 1e-5
    assert _shift(plain) > 0.1, "transformers now masks the audio padding itself: audio_mask.py can go"


def test_an_unpadded_clip_is_unchanged(encoders):
    """The real model's single-clip behaviour is kept: +1 on every key is nothing to softmax."""
    plain, masked = encoders
    short, long = _clips()
    for clips in ([long], [short, long]):
        torch.testing.assert_close(_encode(masked, clips)[-1], _encode(plain, clips)[-1], rtol=1e-5, atol=1e-6)


def test_idempotent_and_loud_on_a_model_without_audio():
    model = _unmasked_tiny()
    assert mask_audio_padding(model) == 1
    assert mask_audio_padding(model) == 0
    assert type(model.model.embed_tokens_extend.audio_embed.encoder).__name__ == "MaskedPhi4MultimodalAudioModel"
    with pytest.raises(ValueError, match="no Phi4MultimodalAudioModel"):
        mask_audio_padding(torch.nn.Linear(2, 2))


def test_the_loader_masks(tmp_path):
    from pronounce.model.loader import load_base_model
    from pronounce.model.tiny import build_tiny_model

    model = load_base_model(build_tiny_model(tmp_path / "tiny"))
    assert type(model.model.embed_tokens_extend.audio_embed.encoder).__name__ == "MaskedPhi4MultimodalAudioModel"
