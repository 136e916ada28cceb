"""A real padding mask for Phi-4-multimodal's audio encoder (transformers 5.24).

``Phi4MultimodalAudioModel.forward`` builds a boolean mask (True = attend: the clip's frames
and, for a streaming config, its chunk window) and adds it to the relative-attention bias as
``hs_mask.unsqueeze(1) + relative_attention_bias``: a float +1 for a kept key and +0 for a
padded one. That is not a mask: a padded frame keeps almost its whole attention weight, so a
clip's audio tokens move with how much padding its batch-mates impose on it (the tiny model,
3 s beside 0.75 s: 38-55% of their norm). The original remote code does the same in its SDPA
branch and masks properly in its eager branch (``masked_softmax``); we mask in every branch,
and give the front end's convolutions zeros for the padded frames (after the feature
normalisation), which is what an unpadded clip's own zero padding gives them. On the tiny
model a clip then encodes identically alone and in a batch; on the real model the front end's
biases still reach the clip's last tokens through the convolutions, a small edge effect.

For a clip without padding (batch size 1, or the longest clip of a batch) nothing changes:
every key gets the same +1, which softmax ignores, its frames are multiplied by 1, and the real
model's streaming window is the whole clip (``chunk_size: -1``). So the real model's
single-clip behaviour, the one it was trained and published with, is kept exactly.

How: the two methods that make the boolean mask return the additive form instead (0 where
attended, the dtype's minimum where not), so the encoder's own ``mask + bias`` becomes the
right sum; the first also zeroes the padded frames. The encoder instances are given a subclass with those two overrides; no class of
transformers is modified. ``tests/model/test_audio_mask.py`` checks the property that matters: a
clip encodes the same alone and beside longer clips.
"""

from __future__ import annotations

import functools


def _additive(mask, dtype):
    """A boolean keep-mask as an additive attention mask; any other mask passes unchanged."""
    import torch

    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


@functools.cache
def _masked_encoder_class():
    """Phi4MultimodalAudioModel with the mask built additively (one class, made on first use)."""
    from transformers.models.phi4_multimodal.modeling_phi4_multimodal import Phi4MultimodalAudioModel

    class MaskedPhi4MultimodalAudioModel(Phi4MultimodalAudioModel):
        def forward_embeddings(self, hidden_states, masks):
            if masks is not None:  # padded frames as zeros, which is what an unpadded clip's convolutions see
                hidden_states = hidden_states * masks.unsqueeze(-1).to(hidden_states.dtype)
            hidden_states, hs_mask, masks = super().forward_embeddings(hidden_states, masks)
            return hidden_states, _additive(hs_mask, hidden_states.dtype), masks

        def calculate_hs_mask(self, hidden_states, device, mask):
            return _additive(super().calculate_hs_mask(hidden_states, device, mask), hidden_states.dtype)

    return MaskedPhi4MultimodalAudioModel


def mask_audio_padding(model) -> int:
    """Give every audio encoder in ``model`` the real padding mask; return how many were changed.

    Idempotent. Raises when the model has no audio encoder (nothing to fix means the loader
    handed over something other than Phi-4-multimodal).
    """
    masked = _masked_encoder_class()
    plain = masked.__base__
    encoders = [m for m in model.modules() if isinstance(m, plain) and not isinstance(m, masked)]
    if not encoders and not any(isinstance(m, masked) for m in model.modules()):
        raise ValueError("mask_audio_padding: the model has no Phi4MultimodalAudioModel")
    for encoder in encoders:
        encoder.__class__ = masked
    return len(encoders)
