"""audio_mask: a clip's answer does not depend on its batch-mates. Each clip of a padded batch
gets its batch-1 logits, and greedy generation the same tokens at batch size 1 and 8, at frame
lengths that are and are not multiples of 8 (the front end's three stride-2 convolutions), on
the tiny model given a trained encoder's kind of statistics and biases."""

import copy

import numpy as np
import pytest
import torch
from eval_world import one_thread  # noqa: F401 (fixture)
from transformers.models.phi4_multimodal.modeling_phi4_multimodal import (
    Phi4MultimodalAudioModel, Phi4MultimodalAudioNemoConvSubsampling)

from pronounce.evaluation import generation as G
from pronounce.model.audio_mask import mask_audio_padding
from pronounce.model.loader import load_base_model
from pronounce.model.processor import load_processor
from pronounce.model.tiny import build_tiny_model
from pronounce.task import prompts

# Frames per clip (10 ms each): 120 and 200 are multiples of 8, the others are not; 198 is the
# longest, so the others are padded to it. (73 is odd: its first convolution reads one frame past
# its end; 118 even: its second one does.)
FRAMES = (118, 120, 198, 73)
# float32 rounding: a batch changes the shapes of the matrix products, so their summation order;
# through the 2 encoder blocks and 2 decoder layers that moves logits of ~2 by <= 8e-7 (measured:
# a few float32 ulps, 2.4e-7 at 2.0). 1e-5 leaves 10x headroom and is 10^4 below what padding
# moved them by before (0.12 for 118 frames beside 198).
ATOL = 1e-5


def clip(frames: int, seed: int) -> np.ndarray:
    """A clip that the feature extractor turns into `frames` frames (25 ms window, 10 ms hop)."""
    n = 160 * (frames - 1) + 400
    t = np.arange(n) / 16000
    rng = np.random.default_rng(seed)
    return (0.1 * np.sin(2 * np.pi * (250 + 90 * seed) * t) + 0.02 * rng.standard_normal(n)).astype(np.float32)


def trained_like(model):
    """The encoder given what a trained one has and the tiny one lacks: non-zero biases
    (tiny.calibrate_audio zeroes them; they are what the front end's convolutions write over the
    padding) and normalisation statistics of the real model's kind (log-mel means near 9,
    inverse stds near 0.25: a padded frame, 0 before normalisation, is then -mean*invstd ~ -2)."""
    encoder = model.model.embed_tokens_extend.audio_embed.encoder
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        norm = encoder.encoder_embedding
        norm.global_mean.copy_(9 + torch.randn(norm.global_mean.shape, generator=g))
        norm.global_invstd.copy_(0.25 + 0.05 * torch.rand(norm.global_invstd.shape, generator=g))
        for name, p in encoder.named_parameters():
            if name.endswith(("bias", ".b1", ".b2")):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    assert norm.global_mean.abs().min() > 1 and (norm.global_invstd - 1).abs().min() > 0.5
    return model.eval()


def with_classes(model, encoder_class, embed_class):
    """A copy of `model` whose audio encoder and its subsampling front end run the given classes."""
    model = copy.deepcopy(model)
    encoder = model.model.embed_tokens_extend.audio_embed.encoder
    encoder.__class__, encoder.embed.__class__ = encoder_class, embed_class
    return model


@pytest.fixture(scope="module")
def tiny(one_thread, tmp_path_factory):  # noqa: F811 (the fixture imported above)
    base = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    return trained_like(load_base_model(base)), load_processor(base)


def rows(processor, frames=FRAMES, tasks=("mdd",)):
    return [{"utt_id": f"c{f}", "task": task, "prompt": prompts.user_turn(task, processor.audio_token),
             "audio": clip(f, i), "duration": f / 100} for task in tasks for i, f in enumerate(frames)]


def logits_per_clip(model, processor, batch_rows) -> list[torch.Tensor]:
    """Each row's logits over its own tokens, in a left-padded evaluation batch."""
    batch = G.Generator(model, processor, lambda r: r["audio"], 1).collator.collate_for_generation(batch_rows)
    with torch.inference_mode():
        logits = model(**batch).logits
    keep = batch["attention_mask"].bool()
    return [logits[i][keep[i]] for i in range(len(batch_rows))]


def published(model):
    """`model` with the audio encoder as transformers builds it: at batch size 1 (no padding) it is
    the published computation, so the reference for a clip alone."""
    return with_classes(model, Phi4MultimodalAudioModel, Phi4MultimodalAudioNemoConvSubsampling)


def batch_shift(model, processor) -> dict[int, float]:
    """Per clip (by frames): the largest difference between its logits in `model`'s padded batch
    and its logits alone, as published."""
    batch, alone = rows(processor), published(model)
    batched = logits_per_clip(model, processor, batch)
    return {f: float((batched[i] - logits_per_clip(alone, processor, [batch[i]])[0]).abs().max())
            for i, f in enumerate(FRAMES)}


def test_each_clip_of_a_padded_batch_gets_its_batch_1_logits(tiny):
    model, processor = tiny
    assert all(shift < ATOL for shift in batch_shift(model, processor).values())


def test_the_front_end_is_masked_per_clip_by_its_length(tiny):
    """The attention mask alone (the front end convolving the padded frames as transformers does)
    leaves the clips whose lengths are not multiples of 8 moved; 120 frames never read past their
    end. Measured: 118 frames 5.9e-3, 73 frames 1.1e-2, 120 and 198 (the longest) within
    rounding; with the attention unmasked too, every padded clip moves by 2-4e-2. So the first
    test can fail."""
    model, processor = tiny
    attention_only = with_classes(model, type(model.model.embed_tokens_extend.audio_embed.encoder),
                                  Phi4MultimodalAudioNemoConvSubsampling)
    shift = batch_shift(attention_only, processor)
    assert shift[118] > 1e-3 and shift[73] > 1e-3
    assert shift[120] < ATOL and shift[198] < ATOL
    padded = [shift for frames, shift in batch_shift(published(model), processor).items() if frames != 198]
    assert min(padded) > 1e-2, "transformers now masks the audio padding itself: audio_mask.py can go"


def test_greedy_answers_do_not_depend_on_the_batch_size(tiny):
    """What eval.batch_size 1 and 8 generate (generation.make_batches and Generator, as the
    evaluate stage runs them), with a random LoRA standing in for a trained adapter (as in the
    evaluate tests; the bare tiny model answers every clip alike): the same tokens for every
    clip, both tasks. Measured with the previous mask (attention, and the padded frames zeroed
    before the first convolution only): 1 of the 16 answers differed."""
    from peft import LoraConfig, get_peft_model

    model, processor = tiny
    torch.manual_seed(1)
    model = get_peft_model(copy.deepcopy(model), LoraConfig(
        r=4, lora_alpha=8, target_modules=r"model\.layers\.\d+\.self_attn\.(qkv|o)_proj", init_lora_weights=False,
        task_type="CAUSAL_LM")).eval()
    frames = (60, 73, 97, 118, 120, 150, 203, 198)
    instances = sorted(rows(processor, frames, prompts.TASKS), key=lambda r: (r["task"], r["duration"], r["utt_id"]))
    generate = G.Generator(model, processor, lambda r: r["audio"], max_new_tokens=16)
    answers = {bs: [g for b in G.make_batches(instances, bs) for g in generate(b)] for bs in (1, 8)}
    assert len(G.make_batches(instances, 8)) == 2 and answers[1] == answers[8]
    # the answers depend on the clip within each task, so a clip moved by its batch-mates could show
    # (measured: 5 distinct APA answers and 3 distinct MDD answers of 8 clips each)
    distinct = {t: len({a["raw"] for a, i in zip(answers[1], instances) if i["task"] == t}) for t in prompts.TASKS}
    assert min(distinct.values()) >= 2, distinct


def test_an_unpadded_clip_is_unchanged(tiny):
    """The real model's single-clip behaviour is kept: +1 on every key is nothing to softmax, and
    nothing is zeroed: alone and as the longest clip of a batch, within rounding (the +1 on every
    attention logit rounds them differently)."""
    model, processor = tiny
    plain, batch = published(model), rows(processor)
    for clips, i in (([batch[2]], 0), (batch, 2)):  # 198 frames: the longest
        ours, theirs = logits_per_clip(model, processor, clips)[i], logits_per_clip(plain, processor, clips)[i]
        torch.testing.assert_close(ours, theirs, rtol=0, atol=ATOL)


def test_idempotent_and_loud_on_a_model_without_audio(tiny):
    model = published(tiny[0])
    assert mask_audio_padding(model) == 1
    assert mask_audio_padding(model) == 0
    encoder = model.model.embed_tokens_extend.audio_embed.encoder
    assert type(encoder).__name__ == "MaskedPhi4MultimodalAudioModel"
    assert type(encoder.embed).__name__ == "MaskedPhi4MultimodalAudioNemoConvSubsampling"
    with pytest.raises(ValueError, match="no Phi4MultimodalAudioModel"):
        mask_audio_padding(torch.nn.Linear(2, 2))


def test_the_loader_masks(tiny):
    encoder = tiny[0].model.embed_tokens_extend.audio_embed.encoder  # load_base_model's
    assert type(encoder).__name__ == "MaskedPhi4MultimodalAudioModel"
    assert type(encoder.embed).__name__ == "MaskedPhi4MultimodalAudioNemoConvSubsampling"
