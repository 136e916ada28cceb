"""The preallocated key/value cache layer against transformers' own."""

from pronounce.evaluation import kvcache


def test_growing_cache_layer_matches_the_default_layer():
    """Same keys/values as transformers' DynamicLayer through prefill, steps past the capacity,
    and states replaced from outside (crop, batch selection)."""
    import torch
    from transformers.cache_utils import DynamicLayer

    torch.manual_seed(0)
    ours, ref = kvcache._growing_layer()(capacity=7), DynamicLayer()
    for step, n in enumerate((5, 1, 1, 1, 1, 1, 3)):  # 13 tokens in a buffer of 7: grows twice
        k, v = torch.randn(3, 2, n, 4), torch.randn(3, 2, n, 4)
        got, want = ours.update(k, v), ref.update(k, v)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), step
        assert ours.get_seq_length() == ref.get_seq_length()
    for layer in (ours, ref):
        layer.crop(-2)
        layer.batch_select_indices(torch.tensor([2, 0]))
    k, v = torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 4)
    got, want = ours.update(k, v), ref.update(k, v)
    assert all(torch.equal(a, b) for a, b in zip(got, want)) and ours.get_seq_length() == 12


def test_a_window_longer_than_the_generation_is_full_attention():
    """Phi-4-multimodal sets a 262,144-token sliding window on every layer (so builtin:tiny, with
    the real structure, does too): within it the window never slides and the layer grows as a
    full-attention one; a window shorter than the generation keeps transformers' own layer."""
    from transformers.cache_utils import DynamicSlidingWindowLayer

    from pronounce.evaluation.kvcache import growing_cache
    from pronounce.model.loader import real_config

    text = real_config().get_text_config()
    assert text.sliding_window == 262144
    assert {type(layer).__name__ for layer in growing_cache(text, 2048).layers} == {"GrowingLayer"}
    text.sliding_window = 1024
    assert all(type(layer) is DynamicSlidingWindowLayer for layer in growing_cache(text, 2048).layers)
