"""Short real training runs of the tiny model on a slice of the bundled corpus."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch
from conftest import ROOT, SHORT_RECIPE, raw_params
from safetensors.torch import load_file
from transformers import TrainerCallback

from pronounce.core.errors import ParamsError
from pronounce.core.params import load_params, parse_params
from pronounce.training.adapters import load_pretrained_lora, lora_config
from pronounce.training.train import (EpochAdapters, SamplerEpoch, latest_checkpoint, run_train, sft_config,
                                      trainer_class)


@pytest.fixture(scope="module")
def workspace(training_ws):
    return training_ws  # the test run's, read only: every run writes under its test's tmp_path


@pytest.fixture
def params():
    """params.yaml's dict with the short smoke recipe (conftest.SHORT_RECIPE, the one the test run's
    trained_r64 was trained with): a test edits it, `train` builds the job."""
    raw = raw_params()
    raw["train"]["recipes"]["smoke"].update(SHORT_RECIPE)
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
# install_tied_token_head, its output norm calibrated): the training loss logged at each of the 8
# steps (they start above ln(2112) = 7.7: the calibrated norm makes the random model's logits spread).
# Why a tolerance although reruns here are bit-identical (asserted below): another CPU or BLAS
# build may sum in another order; rel 1e-4 admits that, while a change of the model, recipe,
# data, collator or masking moves these losses by much more (one step to the next differs by 1e-2-1e-1).
# REGENERATE when the tiny model, the smoke recipe or the training code changes on purpose:
# run this test; its failure message prints the new values to paste here. (Last: the tiny model's
# output norm calibrated; the same values under ATEN_CPU_CAPABILITY=avx2.)
GOLDEN_LOSSES_PAPER_R64 = [12.527426, 12.581205, 9.313462, 8.369319, 7.006356, 6.798216, 4.191944, 7.224796]


@pytest.mark.slow  # trains
def test_training_losses_are_the_golden_ones_and_reruns_are_bit_identical(workspace, params, trained_r64, tmp_path):
    first = json.loads((trained_r64 / "timing.json").read_text())  # the test run's run of this recipe
    params["train"]["recipes"]["smoke"]["save_steps"] = 1  # a checkpoint every step changes nothing trained
    train(workspace, params, "paper_r64", tmp_path / "b")
    a, b = trained_r64 / "model", tmp_path / "b/model"
    assert adapter_bytes(a / "adapter") == adapter_bytes(b / "adapter")
    assert sorted(p.name for p in a.iterdir()) == ["adapter", "epoch-1", "epoch-2", "processor", "training.json"]
    # what `pronounce assess` reads to say which base and recipe the adapter comes from
    assert json.loads((a / "training.json").read_text()) == {
        "config": "paper_r64", "profile": "smoke", "epochs": 2, "seed": params["seed"], "base": "builtin:tiny",
        "revision": None}
    assert adapter_bytes(a / "epoch-2") == adapter_bytes(a / "adapter")
    assert (a / "adapter/adapter_model.safetensors").samefile(a / "epoch-2/adapter_model.safetensors")  # on disk once
    losses = [float(line.split("\t")[-1]) for line in
              (trained_r64 / "live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]]
    assert first["steps"] == len(losses) == 8
    assert losses == pytest.approx(GOLDEN_LOSSES_PAPER_R64, rel=1e-4), f"new losses: {losses}"


@pytest.mark.slow  # reads the test run's trained adapter
def test_paper_r64_is_rank_64_on_the_text_decoder_only(trained_r64):
    cfg = json.loads((trained_r64 / "model/adapter/adapter_config.json").read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["lora_dropout"]) == (64, 128, 0.05)
    lora_keys = [k for k in load_file(trained_r64 / "model/adapter/adapter_model.safetensors") if ".lora_" in k]
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


def optimizer_rates(workspace, params, name, tmp_path):
    """{trainable weight's name: its peak learning rate} and the optimizer's groups, as the train
    stage's trainer builds them for config `name` under `params` (nothing trained)."""
    import datasets

    from pronounce.model.processor import load_processor
    from pronounce.training.adapters import training_model

    job = parse_params(params).train_job(name)
    processor = load_processor(workspace / "base")
    model = training_model(job, str(workspace / "base"), None, processor, "sdpa")
    trainer = trainer_class()(model=model, args=sft_config(job.recipe, tmp_path, job.seed),
                              train_dataset=datasets.Dataset.from_list([{"x": 0}]), processing_class=processor,
                              audio_learning_rate=job.recipe.audio_learning_rate)
    groups = trainer.create_optimizer().param_groups
    names = {id(p): n.removeprefix("base_model.model.") for n, p in model.named_parameters()}
    rates = [(names[id(p)], g["lr"]) for g in groups for p in g["params"]]
    assert sorted(n for n, _ in rates) == sorted(names[id(p)] for p in model.parameters() if p.requires_grad)
    return dict(rates), groups


def test_the_audio_modules_train_at_the_recipes_audio_learning_rate(workspace, params, tmp_path):
    """train.recipes.<profile>.audio_learning_rate: the unfrozen audio encoder and projector, every
    weight of them and nothing else, get their own groups at that rate, after the groups of the
    LoRA and token rows at learning_rate (the first group's rate is the one logged); null, or a
    config that trains no audio module, leaves transformers' groups as they are, at one rate."""
    from pronounce.training.adapters import AUDIO_MODULES

    recipe = params["train"]["recipes"]["smoke"]
    recipe["audio_learning_rate"] = 1e-4
    rates, groups = optimizer_rates(workspace, params, "unfreeze", tmp_path)
    audio = {n for n in rates if n.startswith(AUDIO_MODULES)}
    assert audio and all(".modules_to_save.default." in n for n in audio)
    assert {rates[n] for n in audio} == {1e-4}
    assert {r for n, r in rates.items() if n not in audio} == {3e-3}  # the LoRA and the token rows
    assert groups[0]["lr"] == 3e-3 and [g["lr"] for g in groups if g["params"]] == [3e-3, 1e-4, 1e-4]
    assert all(g["weight_decay"] == 0.0 for g in groups)  # the recipe's (transformers' default), kept per group

    recipe["audio_learning_rate"] = None  # the paper's: one rate for every trained weight
    one_rate, default_groups = optimizer_rates(workspace, params, "unfreeze", tmp_path)
    assert one_rate.keys() == rates.keys() and set(one_rate.values()) == {3e-3}
    assert len(default_groups) == 2  # transformers' own: with weight decay and without
    recipe["audio_learning_rate"] = 1e-4  # a config with no audio module trained: nothing to split
    r320, r320_groups = optimizer_rates(workspace, params, "pretrained_r320", tmp_path)
    assert set(r320.values()) == {3e-3} and len(r320_groups) == 2


class Kill(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise KeyboardInterrupt("killed after the first checkpoint")


class OptimizerAtStart(TrainerCallback):
    """The optimizer's group rates and how many weights have Adam state, as training begins
    (after a resumed run has loaded its checkpoint's optimizer)."""

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        weights = [p for g in optimizer.param_groups for p in g["params"]]
        self.rates = [g["lr"] for g in optimizer.param_groups if g["params"]]
        self.with_state = sum(bool(optimizer.state.get(p)) for p in weights) / len(weights)


@pytest.mark.slow  # trains
def test_unfreeze_at_its_audio_rate_resumes_to_the_same_adapters(workspace, params, tmp_path):
    """The train stage's optimizer with the audio modules' own groups (audio_learning_rate) is
    saved in a checkpoint and loaded back on resume, groups, rates and Adam state, to the bytes
    an uninterrupted run ends with (a resumed optimizer of other groups fails to load)."""
    params["train"]["recipes"]["smoke"]["audio_learning_rate"] = 1e-4
    with pytest.raises(KeyboardInterrupt, match="killed after the first checkpoint"):
        train(workspace, params, "unfreeze", tmp_path / "x", callbacks=[Kill()])  # after step 4 (epoch 1)
    start = OptimizerAtStart()
    assert train(workspace, params, "unfreeze", tmp_path / "x", callbacks=[start])["resumed_from"] == "checkpoint-4"
    fresh = OptimizerAtStart()
    train(workspace, params, "unfreeze", tmp_path / "y", callbacks=[fresh])
    assert (fresh.with_state, fresh.rates) == (0, [0.0, 0.0, 0.0])  # warm-up (1 step) starts every rate at 0
    # resumed after step 4 of 8: both peaks decayed alike (linear, 4 of the 7 steps after warm-up
    # left), and Adam state for every trained weight
    assert start.rates == pytest.approx([3e-3 * 4 / 7, 1e-4 * 4 / 7, 1e-4 * 4 / 7])
    assert start.with_state == 1
    for folder in ("adapter", "epoch-1", "epoch-2"):
        assert adapter_bytes(tmp_path / "x/model" / folder) == adapter_bytes(tmp_path / "y/model" / folder), folder


# The stage's training code (run_train) in a process of its own, which stops (sleeps) in the
# middle of the optimizer step after step HOLD, once its first micro-batch is through backward,
# so the test's SIGKILL lands mid-epoch at a known point: after checkpoint-HOLD, with that
# step's accumulated gradient, optimizer and RNG states in memory and lost.
HOLDING_TRAINER = """
import json, sys, time
from pathlib import Path
from transformers import TrainerCallback
from pronounce.core.params import parse_params
from pronounce.training.train import run_train

raw, ws, out, hold = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])

class Hold(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        (out / "began-at").write_text(str(state.global_step))
    def on_substep_end(self, args, state, control, **kwargs):
        if state.global_step == hold:
            (out / "holding").write_text(str(state.global_step))
            time.sleep(3600)

run_train(parse_params(raw).train_job("paper_r64"), ws / "base", ws / "decoded", ws / "materialized",
          out / "model", out / "live", runs_dir=out / "runs", callbacks=[Hold()])
"""


def kill_mid_step(ws, params, out, hold):
    """Start training in a subprocess, SIGKILL it mid-step after step `hold`; the step it began at."""
    out.mkdir(exist_ok=True)
    (out / "holding").unlink(missing_ok=True)
    log = out / f"train-{hold}.log"  # a file, not a pipe: a full pipe would stall the process
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-c", HOLDING_TRAINER, json.dumps(params), str(ws), str(out), str(hold)],
                                stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600  # a generous bound for a loaded machine, not a timing assertion
        while not (out / "holding").exists():
            assert proc.poll() is None, f"the training process ended (rc {proc.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the training process never reached the step to kill it at"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return int((out / "began-at").read_text())


@pytest.mark.slow  # trains, in three processes
def test_a_run_killed_mid_epoch_resumes_to_the_same_adapters(workspace, params, tmp_path):
    # 8 micro-batches of 2 an epoch, 2 per optimizer step: 4 steps an epoch, 8 in all; a
    # checkpoint every 3 steps and at each epoch's end: 3, 4 (epoch 1), 6, 8 (epoch 2). LoRA
    # dropout draws from the RNG and warmup + linear decay move the learning rate every step,
    # so a resume that restored the RNG, optimizer or scheduler state wrongly, or fed another
    # micro-batch order, ends elsewhere. Expected: byte-identical, not within a tolerance: on
    # one CPU thread with deterministic kernels the resumed run does the same float operations
    # in the same order as the uninterrupted one (the test above finds reruns bit-identical),
    # so any difference is state that was not restored.
    params["train"]["recipes"]["smoke"].update(batch_size=2, grad_accum=2, save_steps=3, warmup_ratio=0.25)
    x = tmp_path / "x"
    # Killed in epoch 1, in step 4, after checkpoint-3: epoch 1 not yet saved.
    assert kill_mid_step(workspace, params, x, hold=3) == 0
    (run_dir,) = [d for d in (x / "runs/paper_r64").iterdir() if d.name != "tensorboard"]  # its fingerprint
    assert [c.name for c in run_dir.glob("checkpoint-*")] == ["checkpoint-3"] and not (run_dir / "epochs").exists()
    # Rerun: resumes at step 3 (its epoch's 4th micro-batch on), saves epoch 1, and is killed in
    # epoch 2, in step 7, after checkpoint-6: the sampler must give epoch 2's order, not epoch 1's.
    assert kill_mid_step(workspace, params, x, hold=6) == 3
    assert [c.name for c in run_dir.glob("checkpoint-*")] == ["checkpoint-6"]
    assert sorted(p.name for p in (run_dir / "epochs").iterdir()) == ["epoch-1"]
    assert not (x / "model").exists()  # nothing that looks finished

    resumed = train(workspace, params, "paper_r64", x)
    assert (resumed["resumed_from"], resumed["steps"]) == ("checkpoint-6", 8)
    train(workspace, params, "paper_r64", tmp_path / "y")  # uninterrupted
    for folder in ("adapter", "epoch-1", "epoch-2"):
        assert adapter_bytes(x / "model" / folder) == adapter_bytes(tmp_path / "y/model" / folder), folder
    assert adapter_bytes(x / "model/epoch-2") == adapter_bytes(x / "model/adapter")
    # the logs too: the loss of every step, replayed from the checkpoint and continued
    loss = "live/plots/metrics/train/loss.tsv"
    assert (x / loss).read_text() == (tmp_path / "y" / loss).read_text()
    assert len((x / loss).read_text().splitlines()) == 1 + 8


@pytest.mark.parametrize("processes", [1, 2])
def test_a_mid_epoch_resume_draws_the_resumed_epochs_order_under_ddp_too(processes):
    # The dataloader as the trainer builds it for process 0 of `processes`, and the resume of
    # epoch 2 (index 1) after 2 micro-batches as transformers does it: skip them, then set_epoch.
    from types import SimpleNamespace

    from accelerate.data_loader import prepare_data_loader, skip_first_batches
    from torch.utils.data import DataLoader
    from transformers import TrainerState

    from pronounce.training.sampler import TaskLengthSampler

    lengths, tasks = list(range(32)), ["apa"] * 16 + ["mdd"] * 16
    sampler = TaskLengthSampler(lengths, tasks, 2, seed=3)
    loader = prepare_data_loader(DataLoader(range(32), batch_size=2, sampler=sampler), num_processes=processes,
                                 process_index=0, put_on_device=False)
    resumed = skip_first_batches(loader, 2)
    SamplerEpoch(SimpleNamespace(task_sampler=sampler)).on_epoch_begin(None, TrainerState(epoch=1.5), None)
    resumed.set_epoch(1)
    inner = getattr(resumed.batch_sampler, "batch_sampler", None)
    if hasattr(inner, "set_epoch"):
        inner.set_epoch(1)
    epoch_2 = TaskLengthSampler(lengths, tasks, 2, seed=3)
    epoch_2.set_epoch(1)
    expected = epoch_2.batches()[processes * 2::processes]  # process 0's share, after the skip
    assert [b.tolist() for b in resumed] == expected
    # Why SamplerEpoch: under DDP the trainer's own set_epoch does not reach the sampler
    sampler.set_epoch(0)
    resumed.set_epoch(1)
    if hasattr(inner, "set_epoch"):
        inner.set_epoch(1)
    assert sampler.epoch == (1 if processes == 1 else 0)


def fake_checkpoint(folder, epoch, state=None):
    folder.mkdir(parents=True)
    for f in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (folder / f).write_bytes(b"x")
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/somewhere", "r": 8}))
    (folder / "trainer_state.json").write_text(state if state is not None else json.dumps({"epoch": epoch}))


@pytest.mark.parametrize("damage", ["no trainer state", "cut trainer state", "no optimizer"])
def test_a_checkpoint_cut_short_by_a_kill_is_passed_over_and_removed(tmp_path, damage):
    fake_checkpoint(tmp_path / "checkpoint-20", 0.5)
    fake_checkpoint(tmp_path / "checkpoint-40", 1.0, state='{"epoch": 1.0, "log_hi' if damage == "cut trainer state" else None)
    if damage == "no trainer state":
        (tmp_path / "checkpoint-40/trainer_state.json").unlink()
    elif damage == "no optimizer":
        (tmp_path / "checkpoint-40/optimizer.pt").unlink()
    assert latest_checkpoint(tmp_path, clean=False) == tmp_path / "checkpoint-20"  # another rank: looks only
    assert (tmp_path / "checkpoint-40").exists()
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-20"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-20"]
    fake_checkpoint(tmp_path / "checkpoint-100", 2.5)  # by number, not by name: 100 > 20
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-100"


def test_an_epoch_adapter_lost_to_a_kill_before_its_copy_is_recovered(tmp_path):
    fake_checkpoint(tmp_path / "checkpoint-8", 2.0)  # an epoch's last step, saved; the copy never made
    (tmp_path / "epochs/.epoch-2.tmp").mkdir(parents=True)  # a copy the kill cut short
    EpochAdapters(tmp_path).recover(tmp_path / "checkpoint-8")
    assert sorted(p.name for p in (tmp_path / "epochs").iterdir()) == ["epoch-2"]
    assert json.loads((tmp_path / "epochs/epoch-2/adapter_config.json").read_text())["base_model_name_or_path"] is None
    fake_checkpoint(tmp_path / "checkpoint-9", 2.25)  # mid-epoch: no epoch to recover
    EpochAdapters(tmp_path).recover(tmp_path / "checkpoint-9")
    assert sorted(p.name for p in (tmp_path / "epochs").iterdir()) == ["epoch-2"]


@pytest.mark.slow  # trains
def test_changed_params_never_resume_another_runs_checkpoint(workspace, params, tmp_path):
    with pytest.raises(KeyboardInterrupt, match="killed after the first checkpoint"):
        train(workspace, params, "paper_r64", tmp_path, callbacks=[Kill()])
    changed = raw_params()
    changed["train"] = params["train"]
    changed["lora"]["r"] = 8
    assert train(workspace, changed, "paper_r64", tmp_path)["resumed_from"] is None
    # as if the kill had come before epoch 1's adapter was copied out of checkpoint-4: recovered
    (checkpoint,) = (tmp_path / "runs/paper_r64").glob("*/checkpoint-4")
    shutil.rmtree(checkpoint.parent / "epochs")
    params["train"]["recipes"]["smoke"]["save_steps"] = 2  # a new checkpoint cadence is no new run
    assert train(workspace, params, "paper_r64", tmp_path)["resumed_from"] == "checkpoint-4"
    assert sorted(p.name for p in (tmp_path / "model").glob("epoch-*")) == ["epoch-1", "epoch-2"]
    assert not list((tmp_path / "runs/paper_r64").glob("*/checkpoint-*"))  # finished runs leave none


def test_the_paper_recipe_builds_a_valid_trainer_config(tmp_path):
    recipe = load_params(ROOT / "params.yaml").train.recipes["paper"]
    cfg = sft_config(recipe, tmp_path, seed=1)
    assert (cfg.num_train_epochs, cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (4, 8, 8)  # Table 3: epochs 1-4
    assert (cfg.learning_rate, cfg.optim, cfg.max_length, cfg.logging_steps) == (2e-5, "adamw_torch", 2048, 10)
    assert (cfg.save_strategy, cfg.save_steps, cfg.save_total_limit) == ("steps", 20, 1)  # and each epoch's end
    assert cfg.remove_unused_columns is False
    assert cfg.dataset_kwargs == {"skip_prepare_dataset": True}
    assert cfg.bf16 is (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    # determinism is run_train's (train.determinism), never transformers' CUDA_LAUNCH_BLOCKING
    assert cfg.full_determinism is False and cfg.ddp_find_unused_parameters is False


@pytest.mark.slow  # trains
def test_a_run_shorter_than_logging_steps_still_logs_each_epoch(workspace, params, tmp_path):
    params["train"]["recipes"]["smoke"].update(logging_steps=100, save_steps=100)  # never reached in 8 steps
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
