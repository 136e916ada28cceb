"""The preallocated key/value cache layer against transformers' own."""

from pronounce import kvcache


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
