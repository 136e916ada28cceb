"""The world the evaluate and generation tests run in: the tiny base model, a decoded + materialized
test split of 3 clips, and a config's adapters (import the fixtures into a test module to use them)."""

import shutil

import numpy as np
import pyarrow as pa
import pytest

from pronounce.core.artifacts import ArrowWriter
from pronounce.model.base import run_base
from pronounce.model.tiny import AUDIO_TOKEN
from pronounce.task import prompts
from pronounce.task.materialize import SCHEMA as INSTANCE_SCHEMA

UTTS = [("u1", 1.2), ("u2", 0.6), ("u3", 0.9)]  # (utt_id, seconds): generation order is u2, u3, u1 per task


@pytest.fixture(scope="module")
def one_thread():
    """The tiny model is faster on one thread, and much faster when the CPU is shared (two
    threads spin-waiting for a busy core)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(one_thread, tmp_path_factory):
    """A base model folder, a decoded + materialized test split of 3 clips, and a config's adapters:
    final (= epoch-2, byte-identical) and a different epoch-1."""
    root = tmp_path_factory.mktemp("world")
    run_base("builtin:tiny", None, 0, root / "models" / "base")
    rng = np.random.default_rng(0)
    (root / "decoded").mkdir()
    (root / "materialized").mkdir()
    schema = pa.schema([("utt_id", pa.string()), ("duration", pa.float64()), ("audio", pa.list_(pa.float32()))])
    w = ArrowWriter(root / "decoded" / "test.arrow", schema)
    m = ArrowWriter(root / "materialized" / "test.arrow", INSTANCE_SCHEMA)
    for row, (utt, seconds) in enumerate(UTTS):
        w.write({"utt_id": utt, "duration": seconds, "audio": (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)})
        for task in prompts.TASKS:
            prompt = prompts.user_turn(task, AUDIO_TOKEN)
            m.write({"utt_id": utt, "split": "test", "task": task, "prompt": prompt, "answer": "{}",
                     "text": prompt, "audio_row": row, "duration": seconds, "input_ids": [0]})
    w.close()
    m.close()

    from peft import LoraConfig, get_peft_model

    from pronounce.model.loader import load_base_model

    for folder, seed in (("adapter", 1), ("epoch-1", 2)):
        import torch

        torch.manual_seed(seed)
        model = get_peft_model(load_base_model(root / "models" / "base"), LoraConfig(
            r=4, lora_alpha=8, target_modules=r"model\.layers\.\d+\.self_attn\.(qkv|o)_proj",
            init_lora_weights=False, task_type="CAUSAL_LM"))
        model.save_pretrained(str(root / "models" / "cfg" / folder))
    shutil.copytree(root / "models" / "cfg" / "adapter", root / "models" / "cfg" / "epoch-2")
    return root
