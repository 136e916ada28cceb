"""A key/value cache for CPU generation that does not copy itself at every step.

transformers' DynamicCache grows each layer with `torch.cat([keys, new])`: every decoding step
copies the whole cache of every layer. With batch 8 and ~530-token prompts that was ~15% of a
CPU decoding step of the tiny model. `growing_cache` is the same cache with its
full-attention layers writing into a buffer preallocated for prompt + max_new_tokens, so
generations are byte-identical (tested) and only the copies go.
"""

from __future__ import annotations

import functools


@functools.cache
def _growing_layer():
    """GrowingLayer, defined on first use (transformers is imported lazily here)."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """A DynamicLayer whose keys/values are views of a buffer preallocated for `capacity`
        tokens. The attention sees the same values and shapes (only the views' strides differ);
        unlike StaticCache, attention and masks still cover only the tokens seen so far. Past
        the capacity the buffer doubles; states replaced from outside (crop, reorder, offload,
        reset) are copied into a new buffer."""

        def __init__(self, capacity: int):
            super().__init__()
            self.capacity = capacity
            self._key_buf = self._value_buf = self._view = None
            self._length = 0

        def _adopt(self, key_states, value_states, needed: int) -> None:
            have = self.keys.shape[-2] if self.keys is not None and self.keys.numel() else 0
            size = max(self.capacity, have + needed)
            b, h, _, d = key_states.shape
            self._key_buf = key_states.new_empty((b, h, size, d))
            self._value_buf = value_states.new_empty((b, h, size, value_states.shape[-1]))
            if have:
                self._key_buf[..., :have, :].copy_(self.keys)
                self._value_buf[..., :have, :].copy_(self.values)
            self._length = have

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = key_states.shape[-2]
            if self._view is None or self.keys is not self._view:  # first update, or replaced states
                self._adopt(key_states, value_states, n)
            elif self._length + n > self._key_buf.shape[-2]:
                self.capacity = max(self._length + n, 2 * self._key_buf.shape[-2])
                self._adopt(key_states, value_states, n)
            start, end = self._length, self._length + n
            self._key_buf[..., start:end, :].copy_(key_states)
            self._value_buf[..., start:end, :].copy_(value_states)
            self._length = end
            self.keys = self._view = self._key_buf[..., :end, :]
            self.values = self._value_buf[..., :end, :]
            return self.keys, self.values

    return GrowingLayer


def growing_cache(config, capacity: int):
    """The DynamicCache generate would build for `config`, its full-attention layers GrowingLayers
    of `capacity` tokens; other layer kinds (chunked, sliding windows shorter than `capacity`)
    are kept as they are. A sliding window at least `capacity` long never slides here: such a
    layer attends to every token, as a full-attention one (Phi-4-multimodal's window of 262,144
    tokens, on every layer, is one)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

    def full(layer) -> bool:
        return type(layer) is DynamicLayer or (type(layer) is DynamicSlidingWindowLayer
                                               and layer.sliding_window >= capacity)

    kv = DynamicCache(config=config)
    kv.layers = [_growing_layer()(capacity) if full(layer) else layer for layer in kv.layers]
    return kv
