"""Batches for SFT (right padding, prompt-masked labels) and for batched greedy generation
(left padding, prompt only), built with the native ``Phi4MultimodalProcessor``.

A row is a dict with at least ``prompt`` (``prompts.user_turn(task, processor.audio_token)``),
``answer`` (the JSON answer string) and the clip (a 1-D float32 array at 16 kHz), by default
under ``row["audio"]``; pass ``audio_lookup(row) -> array`` to fetch it some other way.

Labels are -100 on every prompt token (user tag, control token, the expanded audio
placeholder, the task prompt, ``<|end|><|assistant|>``) and on every pad: the loss falls on the
answer and its ``<|end|>`` only.

With trl's SFTTrainer pass ``data_collator=PronunciationCollator(processor, ...)`` together
with ``remove_unused_columns=False`` and ``dataset_kwargs={"skip_prepare_dataset": True}`` so
the rows reach the collator untouched.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..task import prompts

IGNORE_INDEX = -100

MODEL_INPUT_KEYS = (
    "input_ids",
    "attention_mask",
    "audio_input_features",
    "audio_embed_sizes",
    "audio_attention_mask",
)


def _default_audio_lookup(row: dict) -> Any:
    return row["audio"]


class PronunciationCollator:
    """``collator(rows)`` -> training batch; ``collator.collate_for_generation(rows)`` -> prompt batch."""

    def __init__(self, processor, audio_lookup: Callable[[dict], Any] | None = None):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.audio_token = processor.audio_token
        self.audio_token_id = processor.audio_token_id
        self.audio_lookup = audio_lookup or _default_audio_lookup
        self.feature_extractor = processor.audio_processor
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        # prompt string -> (token count before the audio placeholder expands, its last token id).
        # Every training prompt is one of two strings, so each is tokenised once per collator.
        self._prompt_cache: dict[str, tuple[int, int]] = {}

    # ------------------------------------------------------------------ helpers

    def _prompt_info(self, prompt: str) -> tuple[int, int]:
        info = self._prompt_cache.get(prompt)
        if info is None:
            n_audio = prompt.count(self.audio_token)
            if n_audio != 1:
                raise ValueError(
                    f"a prompt must hold exactly one audio placeholder {self.audio_token!r}, found {n_audio}"
                )
            ids = self.tokenizer(prompt)["input_ids"]
            info = (len(ids), int(ids[-1]))
            self._prompt_cache[prompt] = info
        return info

    def _clips(self, rows: Sequence[dict]) -> list[np.ndarray]:
        clips = []
        for row in rows:
            clip = np.asarray(self.audio_lookup(row), dtype=np.float32)
            if clip.ndim != 1 or clip.size == 0:
                raise ValueError(f"audio must be a non-empty 1-D array (mono, 16 kHz), got shape {clip.shape}")
            clips.append(clip)
        return clips

    def _audio_features(self, clips: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """The feature extractor run clip by clip, then zero-padded to the longest.

        Same values as the processor's batched call on every real frame, about 3x faster on a
        CPU (the batched call transforms the padding too, in float64), and the padded frames
        are exactly ``padding_value`` (the batched call leaves a stray non-zero frame after
        each shorter clip).
        """
        fe = self.feature_extractor
        feats, sizes = [], []
        for clip in clips:
            out = fe(clip, sampling_rate=self.sampling_rate, return_tensors="pt", return_attention_mask=False)
            feats.append(out["audio_input_features"][0])
            sizes.append(out["audio_embed_sizes"][0])
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        padded = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True, padding_value=float(fe.padding_value))
        mask = torch.arange(padded.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        return {
            "audio_input_features": padded,
            "audio_embed_sizes": torch.stack(sizes).to(torch.long),
            "audio_attention_mask": mask,
        }

    def _encode(self, texts: list[str], clips: list[np.ndarray], padding_side: str) -> dict[str, torch.Tensor]:
        """What ``processor(text=texts, audio=clips)`` returns: each audio placeholder expanded to
        ``audio_embed_sizes[i]`` copies, then one batched tokenizer call."""
        audio = self._audio_features(clips)
        sizes = audio["audio_embed_sizes"].tolist()
        expanded = [t.replace(self.audio_token, self.audio_token * n, 1) for t, n in zip(texts, sizes)]
        text = self.tokenizer(
            expanded, padding="longest", padding_side=padding_side, return_attention_mask=True, return_tensors="pt"
        )
        batch = {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"], **audio}
        counts = (batch["input_ids"] == self.audio_token_id).sum(dim=1)
        if not torch.equal(counts, audio["audio_embed_sizes"]):
            raise RuntimeError(f"audio placeholder count {counts.tolist()} != audio_embed_sizes {sizes}")
        return batch

    # ------------------------------------------------------------------ training

    def __call__(self, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("empty batch")
        infos = [self._prompt_info(row["prompt"]) for row in rows]  # also validates the prompts
        texts = [row["prompt"] + prompts.answer_turn(row["answer"]) for row in rows]
        batch = self._encode(texts, self._clips(rows), padding_side="right")

        input_ids = batch["input_ids"]
        base_len = torch.tensor([n for n, _ in infos], dtype=torch.long)
        last_id = torch.tensor([t for _, t in infos], dtype=torch.long)
        # The single placeholder became audio_embed_sizes[i] tokens.
        prompt_len = base_len + batch["audio_embed_sizes"].to(torch.long) - 1

        rows_idx = torch.arange(len(rows))
        if (prompt_len >= input_ids.shape[1]).any() or not torch.equal(input_ids[rows_idx, prompt_len - 1], last_id):
            raise RuntimeError("prompt/answer token boundary not where expected (tokenizer merged across it?)")

        positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
        labels = input_ids.masked_fill(positions < prompt_len.unsqueeze(1), IGNORE_INDEX)
        labels = labels.masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
        batch["labels"] = labels
        return batch

    # ------------------------------------------------------------------ generation

    def collate_for_generation(self, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Prompt-only batch, LEFT padded, for ``model.generate(**batch)``.

        The generated tokens of row i are ``output[i, batch["input_ids"].shape[1]:]``.
        """
        if not rows:
            raise ValueError("empty batch")
        texts = [row["prompt"] for row in rows]
        for text in texts:
            self._prompt_info(text)  # validates the placeholder count
        return self._encode(texts, self._clips(rows), padding_side="left")
