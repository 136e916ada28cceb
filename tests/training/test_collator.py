"""Training and generation batches: prompt-masked labels, padding sides, audio placeholders."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pronounce.model import loader as M
from pronounce.model import processor as MP
from pronounce.model import tiny as T
from pronounce.task import prompts
from pronounce.training.collator import IGNORE_INDEX, PronunciationCollator

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "data" / "speechocean762-mini"
UTTS = ["000010011", "000010035", "000010053", "000030012", "000050003", "000060020"]


def wave(utt: str) -> np.ndarray:
    clip, sr = sf.read(CORPUS / "WAVE" / f"SPEAKER{utt[1:5]}" / f"{utt}.WAV", dtype="float32")
    assert sr == 16000
    return clip


def frames(clip: np.ndarray) -> int:
    return (len(clip) - 400) // 160 + 1  # 25 ms windows, 10 ms hop


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return T.build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=5)


@pytest.fixture(scope="module")
def processor(tiny):
    return MP.load_processor(tiny)


@pytest.fixture(scope="module")
def rows(processor):
    scores = json.loads((CORPUS / "resource" / "scores.json").read_text())
    out = []
    for i, utt in enumerate(UTTS):
        item = scores[utt]
        task = prompts.TASKS[i % 2]
        if task == "apa":
            answer = prompts.apa_answer(item)
        else:
            phones = [p.rstrip("012") for w in item["words"] for p in w["phones"].split()]
            answer = prompts.mdd_answer(item["text"], phones)
        out.append({"id": utt, "prompt": prompts.user_turn(task, processor.audio_token), "answer": answer,
                    "audio": wave(utt)})
    assert len({len(r["audio"]) for r in out}) == len(out)
    return out


def test_labels_are_exactly_the_answer_and_end(processor, rows):
    batch = PronunciationCollator(processor)(rows)
    assert set(batch) == {"input_ids", "attention_mask", "audio_input_features", "audio_embed_sizes",
                          "audio_attention_mask", "labels"}
    tok = processor.tokenizer
    for i, row in enumerate(rows):
        kept = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX]
        assert tok.decode(kept) == row["answer"] + prompts.END
        # the kept labels are one contiguous span that ends at the last real token
        span = (batch["labels"][i] != IGNORE_INDEX).nonzero().flatten()
        assert torch.equal(span, torch.arange(span[0], span[0] + len(span)))
        assert int(span[-1]) == int(batch["attention_mask"][i].sum()) - 1
        assert int(batch["input_ids"][i, span[0] - 1]) == tok.convert_tokens_to_ids(prompts.ASSISTANT)


# GOLDEN: (first label position, number of label tokens, row length) per row of UTTS (APA, MDD
# alternating). Fixed by the tiny tokenizer (trained offline on our prompts and the bundled
# corpus's words), the chat layout and each clip's audio placeholders (ceil(frames / 8)); the
# model's size does not enter. Regenerate only when the tokenizer or the prompt layout changes
# (last: the MDD prompt's two blank lines retrained the tiny tokenizer; each APA prompt one token longer).
GOLDEN_LABEL_SPANS = [(529, 10, 539), (156, 21, 177), (539, 12, 551), (155, 33, 188), (551, 10, 561), (154, 29, 183)]


def test_label_positions_are_the_golden_ones(processor, rows):
    batch = PronunciationCollator(processor)(rows)
    spans = []
    for i in range(len(rows)):
        kept = (batch["labels"][i] != IGNORE_INDEX).nonzero().flatten()
        spans.append((int(kept[0]), len(kept), int(batch["attention_mask"][i].sum())))
    assert spans == GOLDEN_LABEL_SPANS, f"new spans: {spans}"


def test_right_padding_and_pads_masked(processor, rows):
    batch = PronunciationCollator(processor)(rows)
    mask = batch["attention_mask"]
    lengths = mask.sum(dim=1)
    assert len(set(lengths.tolist())) > 1  # a mixed-length batch
    for i in range(len(rows)):
        assert mask[i, : lengths[i]].all() and not mask[i, lengths[i]:].any()  # right padded
    pads = mask == 0
    assert pads.any()
    assert (batch["labels"][pads] == IGNORE_INDEX).all()
    assert (batch["input_ids"][pads] == processor.tokenizer.pad_token_id).all()


def test_audio_placeholder_count_is_ceil_frames_over_8(processor, rows):
    batch = PronunciationCollator(processor)(rows)
    for i, row in enumerate(rows):
        n = math.ceil(frames(row["audio"]) / 8)
        assert int(batch["audio_embed_sizes"][i]) == n
        assert int((batch["input_ids"][i] == processor.audio_token_id).sum()) == n
        assert int(batch["audio_attention_mask"][i].sum()) == frames(row["audio"])
    assert batch["audio_input_features"].shape == (len(rows), max(frames(r["audio"]) for r in rows), 80)
    assert batch["audio_attention_mask"].dtype == torch.bool


def test_same_tensors_as_the_processor(processor, rows):
    collator = PronunciationCollator(processor)
    batch = collator(rows)
    texts = [r["prompt"] + prompts.answer_turn(r["answer"]) for r in rows]
    ref = processor(text=texts, audio=[r["audio"] for r in rows], sampling_rate=16000, padding=True,
                    return_tensors="pt")
    for key in ("input_ids", "attention_mask", "audio_embed_sizes", "audio_attention_mask"):
        assert torch.equal(batch[key], ref[key]), key
    for i, row in enumerate(rows):  # identical on every real frame; padding is zeros
        n = frames(row["audio"])
        assert torch.equal(batch["audio_input_features"][i, :n], ref["audio_input_features"][i, :n])
        assert (batch["audio_input_features"][i, n:] == 0).all()


def test_generation_batch_is_left_padded_prompt_only(processor, rows):
    collator = PronunciationCollator(processor)
    batch = collator.collate_for_generation(rows)
    assert "labels" not in batch
    mask = batch["attention_mask"]
    lengths = mask.sum(dim=1)
    assert len(set(lengths.tolist())) > 1
    width = mask.shape[1]
    for i in range(len(rows)):
        assert mask[i, width - lengths[i]:].all() and not mask[i, : width - lengths[i]].any()
    assistant = processor.tokenizer.convert_tokens_to_ids(prompts.ASSISTANT)
    assert (batch["input_ids"][:, -1] == assistant).all()  # generation starts right after <|assistant|>
    train = collator(rows)
    for i in range(len(rows)):  # the prompt tokens are those of the training batch
        prompt = batch["input_ids"][i, width - lengths[i]:]
        assert torch.equal(train["input_ids"][i, : len(prompt)], prompt)
        assert (train["labels"][i, : len(prompt)] == IGNORE_INDEX).all()
        assert int(batch["audio_embed_sizes"][i]) == math.ceil(frames(rows[i]["audio"]) / 8)


def test_batches_run_through_the_model(tiny, processor, rows):
    model = M.load_base_model(tiny).eval()
    collator = PronunciationCollator(processor)
    batch = collator(rows[:3])
    with torch.no_grad():
        out = model(**batch)
    # The model's loss is the next-token cross-entropy over the answer and <|end|> only: the
    # collator's labels, shifted by one, every masked position (prompt, audio, padding) ignored.
    logits, labels = out.logits[:, :-1].float(), batch["labels"][:, 1:]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(out.loss, expected)
    everything = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                   batch["input_ids"][:, 1:].reshape(-1))
    assert not torch.isclose(out.loss, everything)  # the mask matters: not a loss over every token
    gen = collator.collate_for_generation(rows[:2])
    with torch.no_grad():
        seq = model.generate(**gen, max_new_tokens=3, do_sample=False,
                             suppress_tokens=MP.suppressed_token_ids(processor))
    assert seq.shape[0] == 2 and seq.shape[1] <= gen["input_ids"].shape[1] + 3


def test_single_row_and_audio_lookup(processor, rows):
    clips = {r["id"]: r["audio"] for r in rows}
    collator = PronunciationCollator(processor, audio_lookup=lambda row: clips[row["id"]])
    slim = [{k: v for k, v in r.items() if k != "audio"} for r in rows[:1]]
    batch = collator(slim)
    assert batch["audio_attention_mask"].shape == batch["audio_input_features"].shape[:2]
    assert batch["audio_attention_mask"].all()
    kept = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX]
    assert processor.tokenizer.decode(kept) == rows[0]["answer"] + prompts.END


def test_bad_rows_are_refused(processor, rows):
    collator = PronunciationCollator(processor)
    with pytest.raises(ValueError, match="placeholder"):
        collator([{**rows[0], "prompt": rows[0]["prompt"].replace(processor.audio_token, "")}])
    with pytest.raises(ValueError, match="1-D"):
        collator([{**rows[0], "audio": np.zeros((2, 16000), dtype=np.float32)}])
