"""Short real training runs of the tiny model on a slice of the bundled corpus."""

import json
from dataclasses import replace

import pytest
import torch
from conftest import ROOT, raw_params, training_workspace
from safetensors.torch import load_file
from transformers import TrainerCallback

from pronounce.core.errors import ParamsError
from pronounce.core.params import load_params, parse_params
from pronounce.training.adapters import load_pretrained_lora, lora_config
from pronounce.training.train import run_train, sft_config


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return training_workspace(tmp_path_factory.mktemp("train"))


@pytest.fixture
def params():
    """params.yaml's dict with a short smoke recipe: a test edits it, `train` builds the job."""
    raw = raw_params()
    raw["train"]["recipes"]["smoke"].update(epochs=2, batch_size=4, logging_steps=1, learning_rate=3e-3)
    raw["train"]["profile"] = "smoke"
    return raw


def train(ws, params, name, out, callbacks=()):
    return run_train(parse_params(params).train_job(name), ws / "base", ws / "decoded", ws / "materialized",
                     out / "model", out / "live", runs_dir=out / "runs", callbacks=callbacks)


def adapter_bytes(folder):
    return (folder / "adapter_model.safetensors").read_bytes()


# GOLDEN VALUES (torchtune's pattern: expected losses of the tiny recipe). paper_r64 on the
# 16-instance slice with the `params` fixture's recipe (smoke, 2 epochs of batch 4, lr 3e-3,
# seed from params.yaml), on the tied tiny model through trl's fused head (adapters.
# install_tied_token_head): the training loss logged at each of the 8 steps.
# Why a tolerance although reruns here are bit-identical (asserted below): another CPU or BLAS
# build may sum in another order; rel 1e-4 admits that, while a change of the model, recipe,
# data, collator or masking moves these losses by much more (one step to the next differs by 1e-2-1e-1).
# REGENERATE when the tiny model, the smoke recipe or the training code changes on purpose:
# run this test; its failure message prints the new values to paste here.
GOLDEN_LOSSES_PAPER_R64 = [7.774134, 7.771548, 7.674157, 7.507041, 7.172515, 7.384974, 6.794299, 7.285256]


@pytest.mark.slow  # trains
def test_training_losses_are_the_golden_ones_and_reruns_are_bit_identical(workspace, params, tmp_path):
    first = train(workspace, params, "paper_r64", tmp_path / "a")
    train(workspace, params, "paper_r64", tmp_path / "b")
    a, b = tmp_path / "a/model", tmp_path / "b/model"
    assert adapter_bytes(a / "adapter") == adapter_bytes(b / "adapter")
    assert sorted(p.name for p in a.iterdir()) == ["adapter", "epoch-1", "epoch-2", "processor"]
    assert adapter_bytes(a / "epoch-2") == adapter_bytes(a / "adapter")
    losses = [float(line.split("\t")[-1]) for line in
              (tmp_path / "a/live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]]
    assert first["steps"] == len(losses) == 8
    assert losses == pytest.approx(GOLDEN_LOSSES_PAPER_R64, rel=1e-4), f"new losses: {losses}"


@pytest.mark.slow  # trains
def test_paper_r64_is_rank_64_on_the_text_decoder_only(workspace, params, tmp_path):
    train(workspace, params, "paper_r64", tmp_path)
    cfg = json.loads((tmp_path / "model/adapter/adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["lora_dropout"]) == (64, 128, 0.05)
    lora_keys = [k for k in load_file(tmp_path / "model/adapter/adapter_model.safetensors") if ".lora_" in k]
    assert lora_keys and all(".model.layers." in k and "audio" not in k for k in lora_keys)
    assert {k.split(".lora_")[0].rsplit(".", 1)[1] for k in lora_keys} == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}


@pytest.mark.slow  # trains
def test_pretrained_r320_starts_from_the_speech_lora(workspace, params, tmp_path):
    from peft import get_peft_model

    from pronounce.model.loader import load_base_model

    peft_cfg, folder = lora_config(parse_params(params).train_job("pretrained_r320"), str(workspace / "base"), None)
    assert (peft_cfg.r, peft_cfg.lora_alpha, peft_cfg.lora_dropout) == (320, 640, 0.01)
    model = get_peft_model(load_base_model(workspace / "base"), peft_cfg)
    load_pretrained_lora(model, folder)
    speech = load_file(folder / "adapter_model.safetensors")
    loaded = dict(model.named_parameters())
    for key, value in speech.items():
        name = "base_model.model." + key.replace(".weight", ".default.weight")
        assert torch.equal(loaded[name], value), name

    train(workspace, params, "pretrained_r320", tmp_path)
    assert json.loads((tmp_path / "model/adapter/adapter_config.json").read_text())["r"] == 320


@pytest.mark.slow  # trains
def test_unfreeze_saves_its_trained_audio_weights_and_evaluation_uses_them(workspace, params, tmp_path):
    """params.yaml's `unfreeze`: the adapter (and each epoch's) carries the trained audio encoder and
    speech projector, every weight of them, moved from the base model's; the evaluate stage's
    loader (generation.load_model) restores them, and its forward computes the audio embedding
    with them, not with the base model's."""
    from pronounce.data.audio import AudioStore
    from pronounce.evaluation.generation import load_model
    from pronounce.model.loader import load_base_model
    from pronounce.model.processor import load_processor
    from pronounce.task.materialize import load_instances
    from pronounce.training.adapters import AUDIO_MODULES
    from pronounce.training.collator import PronunciationCollator

    train(workspace, params, "unfreeze", tmp_path)
    base_dir = workspace / "base"
    base = load_file(base_dir / "model.safetensors")
    audio = {k for k in base if k.startswith(tuple(f"{m}." for m in AUDIO_MODULES))}
    for folder in ("adapter", "epoch-1", "epoch-2"):
        saved = load_file(tmp_path / "model" / folder / "adapter_model.safetensors")
        kept = {k.removeprefix("base_model.model.").replace(".modules_to_save.default", ""): v for k, v in saved.items()
                if ".lora_" not in k and "trainable_tokens" not in k}
        assert set(kept) == audio, folder  # besides LoRA and the token rows: every audio weight, nothing else
        moved = [k for k in audio if not torch.equal(kept[k], base[k])]
        assert len(moved) > len(audio) // 2, f"{folder}: only {len(moved)} of {len(audio)} moved"
    assert any("up_proj_for_speech" in k for k in moved) and any("down_proj_for_speech" in k for k in moved)

    processor = load_processor(base_dir)
    model = load_model(str(base_dir), None, processor, tmp_path / "model" / "adapter")
    restored = {n.removeprefix("base_model.model.").replace(".modules_to_save.default", ""): p
                for n, p in model.state_dict().items() if ".modules_to_save.default." in n}  # buffers too
    assert set(restored) == audio and all(torch.equal(restored[k], kept[k]) for k in audio)

    # the audio embedding the loaded model computes is the trained modules' (a plain base model
    # given the saved audio weights computes the same), not the base model's
    store = AudioStore(workspace / "decoded" / "train.arrow")
    rows = load_instances(workspace / "materialized", "train").select(range(2)).to_list()
    batch = PronunciationCollator(processor, audio_lookup=lambda r: store[r["audio_row"]])(rows)
    batch.pop("labels")
    at_audio = batch["input_ids"] == processor.audio_token_id

    def audio_embedding(m):
        got = []
        inner = m.get_base_model() if hasattr(m, "get_base_model") else m
        hook = inner.model.embed_tokens_extend.audio_embed.register_forward_hook(lambda mod, a, out: got.append(out))
        with torch.no_grad():
            m(**batch)
        hook.remove()
        return got[0][at_audio]

    trained = load_base_model(base_dir).eval()
    trained.load_state_dict(kept, strict=False)
    ours = audio_embedding(model)
    assert torch.equal(ours, audio_embedding(trained))
    assert not torch.allclose(ours, audio_embedding(load_base_model(base_dir).eval()))


class Kill(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt("killed after the first checkpoint")


@pytest.mark.slow  # trains
def test_interrupted_training_resumes_to_the_same_adapter(workspace, params, tmp_path):
    with pytest.raises(KeyboardInterrupt, match="killed after the first checkpoint"):
        train(workspace, params, "paper_r64", tmp_path / "x", callbacks=[Kill()])
    assert not (tmp_path / "x/model").exists()  # nothing that looks finished
    resumed = train(workspace, params, "paper_r64", tmp_path / "x")
    assert resumed["resumed_from"] == "checkpoint-4"  # the end of epoch 1, saved before the kill
    train(workspace, params, "paper_r64", tmp_path / "y")
    assert adapter_bytes(tmp_path / "x/model/adapter") == adapter_bytes(tmp_path / "y/model/adapter")


@pytest.mark.slow  # trains
def test_changed_params_never_resume_another_runs_checkpoint(workspace, params, tmp_path):
    with pytest.raises(KeyboardInterrupt, match="killed after the first checkpoint"):
        train(workspace, params, "paper_r64", tmp_path, callbacks=[Kill()])
    changed = raw_params()
    changed["train"] = params["train"]
    changed["lora"]["r"] = 8
    assert train(workspace, changed, "paper_r64", tmp_path)["resumed_from"] is None
    assert train(workspace, params, "paper_r64", tmp_path)["resumed_from"] == "checkpoint-4"
    assert not list((tmp_path / "runs/paper_r64").glob("*/checkpoint-*"))  # finished runs leave none


def test_the_paper_recipe_builds_a_valid_trainer_config(tmp_path):
    recipe = load_params(ROOT / "params.yaml").train.recipes["paper"]
    cfg = sft_config(recipe, tmp_path, seed=1)
    assert (cfg.num_train_epochs, cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (4, 8, 8)  # Table 3: epochs 1-4
    assert (cfg.learning_rate, cfg.optim, cfg.max_length, cfg.logging_steps) == (2e-5, "adamw_torch", 2048, 10)
    assert cfg.save_strategy == "epoch" and cfg.remove_unused_columns is False
    assert cfg.dataset_kwargs == {"skip_prepare_dataset": True}
    assert cfg.bf16 is (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    # determinism is run_train's (train.determinism), never transformers' CUDA_LAUNCH_BLOCKING
    assert cfg.full_determinism is False and cfg.ddp_find_unused_parameters is False


@pytest.mark.slow  # trains
def test_a_run_shorter_than_logging_steps_still_logs_each_epoch(workspace, params, tmp_path):
    params["train"]["recipes"]["smoke"].update(logging_steps=100)  # never reached in 8 steps
    train(workspace, params, "paper_r64", tmp_path)
    rows = (tmp_path / "live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in rows] == ["step", "4", "8"]  # the end of epochs 1 and 2
    assert json.loads((tmp_path / "live/metrics.json").read_text())["step"] == 8


def test_a_process_count_other_than_the_launchers_is_refused(workspace, params, tmp_path, monkeypatch):
    # The relaunch itself (one level, N processes, rank 0 writing) is tests/training/test_distributed.py's.
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    job = replace(parse_params(params).train_job("paper_r64"), num_processes=2)  # but this process runs alone
    with pytest.raises(ParamsError, match=r"train\.num_processes is 2 but this run has 1 process"):
        run_train(job, workspace / "base", workspace / "decoded", workspace / "materialized", tmp_path / "model",
                  tmp_path / "live", runs_dir=tmp_path / "runs")


def test_the_paper_recipe_refuses_a_torch_without_a_gpu_in_one_line(params, monkeypatch, tmp_path):
    """Without a GPU the trainer would train the paper recipe on the CPU in fp32 without a word:
    train.recipes.paper.allow_cpu (false) refuses it before anything loads, naming the fix (the CUDA
    wheel for a CPU-only build, the driver for a CUDA build that sees no GPU, or the allowance); the
    smoke recipe, and the paper recipe explicitly allowed, pass."""
    from pronounce.training.train import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    params["train"]["profile"] = "paper"
    job = parse_params(params).train_job("paper_r64")
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(ParamsError) as cpu_build:
        run_train(job, tmp_path / "no-base", tmp_path, tmp_path, tmp_path / "out", tmp_path / "live",
                  runs_dir=tmp_path / "runs")  # refused before it reads any input
    message = str(cpu_build.value)
    assert "\n" not in message and "is a CPU-only build: install the CUDA wheel" in message
    assert 'TORCH_SPEC="torch==' in message and "PIP_EXTRA_INDEX_URL=" in message and "./setup.sh" in message
    assert message.endswith("or set train.recipes.paper.allow_cpu: true to train on the CPU anyway (fp32, slow)")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    with pytest.raises(ParamsError, match=r"\(CUDA 12\.8\) sees no GPU: check the driver and CUDA_VISIBLE_DEVICES"):
        check_device(job)
    params["train"]["recipes"]["paper"]["allow_cpu"] = True
    check_device(parse_params(params).train_job("paper_r64"))
    params["train"]["profile"] = "smoke"
    check_device(parse_params(params).train_job("paper_r64"))
    assert not (tmp_path / "runs").exists()
