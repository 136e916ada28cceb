"""Stage `train`: SFT of one config's LoRA adapter with trl's SFTTrainer.

Outputs, under models/<config>/:
  adapter/          the final adapter (PeftModel.from_pretrained(base, ...) loads it), with
                    any fully trained modules (lm_head, or the audio encoder + projector of the
                    Unfreeze strategy) saved inside it as PEFT `modules_to_save`
  epoch-<k>/        the adapter after each epoch (what evaluation of epochs 1..N reads)
  processor files   the processor the adapter was trained with
The last checkpoint (adapter, optimizer, scheduler, RNG states, trainer state) lives in
runs/<config>/<fingerprint>/ (not a DVC output) while training runs, written every `save_steps`
optimizer steps and at each epoch's end: a rerun after a kill, with the same inputs and params,
resumes from the newest complete one, mid-epoch too (the trainer skips the epoch's micro-batches
already trained, in the sampler's order for that epoch); a change of either gets a new
fingerprint and starts fresh, so nobody resumes someone else's checkpoint. A finished run
deletes its checkpoints, so `dvc repro -f` really retrains.
"""

import filecmp
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import TrainerCallback

from ..core.artifacts import atomic_dir, dir_digest, write_json
from ..core.determinism import set_determinism
from ..core.errors import ParamsError, PipelineError
from ..core.params import Recipe, TrainJob
from ..data.audio import AudioStore
from ..model.processor import load_processor
from ..task.materialize import load_instances
from .adapters import audio_parameters, install_tied_token_head, precision_flags, training_model
from .checkpoints import ADAPTER_FILES, TRAINING_RECORD
from .collator import PronunciationCollator

STABLE_LOG_KEYS = ("loss", "learning_rate", "grad_norm", "epoch")  # wall-clock-free, so reruns match


def fingerprint(*parts) -> str:
    """Hash of everything a training run depends on: resume only within the same fingerprint."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# Recipe keys no trained weight depends on: a run killed under one checkpoint cadence resumes
# under another (a user who lost a stretch of training may well ask for more checkpoints).
NOT_FINGERPRINTED = ("save_steps",)


def params_parts(job: TrainJob) -> tuple:
    """The params a run depends on, as the fingerprint hashes them: the config, its fresh LoRA
    (None for a speech-lora config), the recipe but its NOT_FINGERPRINTED keys, seed and process
    count, each the YAML's own values (the same hash as when they were dicts; tested)."""
    recipe = {k: v for k, v in asdict(job.recipe).items() if k not in NOT_FINGERPRINTED}
    return (asdict(job.config), None if job.lora is None else asdict(job.lora), recipe, job.seed,
            job.num_processes)


def check_device(job: TrainJob) -> None:
    """Refuse a recipe that does not allow a CPU (the paper's: allow_cpu false) where torch sees
    no GPU: the trainer would fall back to the CPU in fp32 without a word. One line naming the
    fix: the CUDA wheel for a CPU-only torch build, the driver for a CUDA build that sees no GPU,
    or train.recipes.<profile>.allow_cpu: true to train there anyway."""
    if job.recipe.allow_cpu or torch.cuda.is_available():
        return
    version = torch.__version__.split("+")[0]
    if torch.version.cuda is None:
        why = (f"this torch ({torch.__version__}) is a CPU-only build: install the CUDA wheel (TORCH_SPEC="
               f"\"torch=={version}\" PIP_EXTRA_INDEX_URL=<your CUDA wheel index> ./setup.sh)")
    else:
        why = (f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU: check the driver and "
               "CUDA_VISIBLE_DEVICES")
    raise ParamsError(f"params.yaml: train.profile {job.profile} is a GPU recipe and {why}, or set "
                      f"train.recipes.{job.profile}.allow_cpu: true to train on the CPU anyway (fp32, slow)")


def sft_config(recipe: Recipe, run_dir: Path, seed: int, num_processes: int = 1):
    """The trainer's arguments for a recipe, run as `num_processes` DDP processes: each
    accumulates grad_accum / N batches, so the effective batch stays the recipe's
    batch_size x grad_accum (params.py refuses an N that does not divide grad_accum)."""
    from trl import SFTConfig

    if recipe.grad_accum % num_processes:
        raise ParamsError(f"params.yaml: train.num_processes {num_processes} does not divide the recipe's "
                          f"grad_accum {recipe.grad_accum}")
    return SFTConfig(
        output_dir=str(run_dir),
        num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.grad_accum // num_processes,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=recipe.warmup_ratio,  # a float in [0, 1) is a ratio of all steps
        optim=recipe.optim,
        max_length=recipe.max_length,
        logging_steps=recipe.logging_steps,
        activation_checkpointing=recipe.gradient_checkpointing,
        **precision_flags(recipe.precision),
        save_strategy="steps",  # and at each epoch's end (EpochAdapters)
        save_steps=recipe.save_steps,
        save_total_limit=1,  # resuming needs only the last; EpochAdapters keeps each epoch's adapter
        eval_strategy="no",
        seed=seed,
        data_seed=seed,
        # Seeds and deterministic kernels are set by run_train (train.determinism, before the
        # adapter is drawn); transformers' own full determinism would add CUDA_LAUNCH_BLOCKING.
        full_determinism=False,
        # Every trainable parameter takes part in every step (LoRA on every decoder layer, audio in
        # every instance), so DDP need not search the graph for unused ones after each backward
        # (transformers' default for a PEFT model), which also conflicts with checkpointing.
        ddp_find_unused_parameters=False,
        remove_unused_columns=False,  # our collator needs prompt/answer/audio_row
        dataset_kwargs={"skip_prepare_dataset": True},  # tokenisation is the collator's job
        report_to=["tensorboard"],  # event files under runs/<config>/<fingerprint>/runs/
        dataloader_num_workers=0,
        # Batches of like length (little padding), in trainer_class's
        # order (pronounce.training.sampler): micro-batches of one task and like lengths, shuffled, so an
        # optimizer step mixes the tasks. The `length` column (with_lengths) feeds it.
        train_sampling_strategy="group_by_length",
        length_column_name="length",
        use_cpu=not torch.cuda.is_available(),
    )


class LiveLogger(TrainerCallback):
    """Loss, learning rate and grad norm to DVCLive (one Live per config; dvcyaml=None so it
    never rewrites dvc.yaml). Only wall-clock-free values, so a rerun writes the same files;
    on resume, the restored log history is replayed first. Only the world's process zero
    opens the Live (another rank's Live would empty and rewrite the same folder). Every epoch's
    end is logged too, so a run shorter than `logging_steps` still has its logs and plots."""

    def __init__(self, live_dir: Path):
        self.live_dir = live_dir
        self.live = None

    def _log(self, logs: dict, step: int) -> None:
        kept = {k: v for k, v in logs.items() if k in STABLE_LOG_KEYS}
        if self.live is None or "loss" not in kept:
            return
        self.live.step = step
        for key, value in kept.items():
            self.live.log_metric(f"train/{key}", value)
        self.live.make_summary()

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from dvclive import Live

        self.live = Live(dir=str(self.live_dir), dvcyaml=None, save_dvc_exp=False, report=None)
        for logs in state.log_history:  # non-empty only when resuming
            self._log(logs, logs["step"])

    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_log = True  # the trainer logs once per step: no row twice at a step

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._log(logs or {}, state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.live is not None:
            self.live.end()


class EpochAdapters(TrainerCallback):
    """Checkpoints at each epoch's end as well as every `save_steps` steps, and each epoch's
    adapter copied out of its checkpoint (into epochs/epoch-<k>/, whole or not at all) before
    the trainer rotates it away. A kill between a checkpoint and its copy is mended on resume
    (recover): the newest checkpoint is then that epoch's own."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.saved_step = None

    def on_train_begin(self, args, state, control, **kwargs):
        state.save_steps = args.save_steps  # a resumed state keeps its checkpoint's cadence otherwise

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.saved_step != state.global_step:  # not saved at this step already (save_steps divides it):
            control.should_save = True  # a second save would rewrite the newest checkpoint in place

    def on_save(self, args, state, control, **kwargs):
        self.saved_step = state.global_step
        if state.is_world_process_zero and float(state.epoch).is_integer():  # an epoch's last step
            save_epoch_adapter(self.run_dir / f"checkpoint-{state.global_step}", self.run_dir, round(state.epoch))

    def recover(self, checkpoint: Path | None) -> None:
        """The adapter of the epoch `checkpoint` ends, if a kill came before its copy."""
        if checkpoint is None:
            return
        epoch = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["epoch"]
        if float(epoch).is_integer() and not (self.run_dir / "epochs" / f"epoch-{round(epoch)}").is_dir():
            save_epoch_adapter(checkpoint, self.run_dir, round(epoch))


def save_epoch_adapter(checkpoint: Path, run_dir: Path, epoch: int) -> None:
    dst = run_dir / "epochs" / f"epoch-{epoch}"
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in ADAPTER_FILES:
        shutil.copy2(checkpoint / f, tmp / f)
    _scrub_adapter_config(tmp)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


def saved_epochs(run_dir: Path) -> dict[int, Path]:
    folders = (run_dir / "epochs").glob("epoch-*")
    return {int(d.name[len("epoch-"):]): d for d in folders if d.name[len("epoch-"):].isdigit()}


def trainer_class():
    """trl's SFTTrainer whose "group_by_length" is pronounce.training.sampler's order: micro-batches of one
    task and like lengths, shuffled, so an optimizer step mixes both tasks (transformers' own
    grouping made most steps single-task). The order does not depend on the number of
    processes, so N processes train exactly the micro-batches one process would (tested).
    Another strategy (the preflight's "sequential") is transformers' own."""
    from trl import SFTTrainer

    from .sampler import TaskLengthSampler

    class Trainer(SFTTrainer):
        def __init__(self, *args, audio_learning_rate=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.audio_learning_rate = audio_learning_rate
            self.add_callback(SamplerEpoch(self))

        def create_optimizer(self, model=None):
            if self.optimizer is not None or self.audio_learning_rate is None:
                return super().create_optimizer(model)
            optimizer = super().create_optimizer(model)
            split_audio_groups(optimizer, audio_parameters(self.model if model is None else model),
                               self.audio_learning_rate)
            return optimizer

        def _get_train_sampler(self, train_dataset=None):
            if self.args.train_sampling_strategy != "group_by_length":
                return super()._get_train_sampler(train_dataset)
            dataset = self.train_dataset if train_dataset is None else train_dataset
            self.task_sampler = TaskLengthSampler(
                dataset[self.args.length_column_name], dataset["task"], self.args.per_device_train_batch_size,
                seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed)
            return self.task_sampler

    return Trainer


def split_audio_groups(optimizer, audio: list, learning_rate: float) -> None:
    """Move the audio weights (`audio`) of each of the optimizer's parameter groups into a group
    of their own at `learning_rate` (a recipe's audio_learning_rate), appended after the others:
    the trainer logs the first group's rate, the scheduler scales every group's by the same
    factor, and a checkpoint's optimizer state (its groups in this order) loads back on resume.
    Called before the first step, so no optimizer state is moved. Why a rate of their own: the
    tiny audio path trained at the smoke recipe's 1e-3 collapses, every clip heard alike
    (measured: params.yaml, the smoke recipe's audio_learning_rate)."""
    ids = {id(p) for p in audio}
    for group in list(optimizer.param_groups):
        moved = [p for p in group["params"] if id(p) in ids]
        if moved:
            group["params"] = [p for p in group["params"] if id(p) not in ids]
            optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"}, "params": moved,
                                       "lr": learning_rate})


class SamplerEpoch(TrainerCallback):
    """Tells the training sampler its epoch at each epoch's start. The trainer's own set_epoch
    does not reach it in one case: resuming mid-epoch under DDP, where accelerate wraps the batch
    sampler in BatchSamplerShard and the skip of the trained micro-batches in SkipBatchSampler,
    and neither passes set_epoch on; the resumed epoch would replay epoch 0's order (tested).
    state.epoch is the epoch's index at its start, and epochs + a fraction on a mid-epoch resume."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        sampler = getattr(self.trainer, "task_sampler", None)
        if sampler is not None:
            sampler.set_epoch(math.floor(state.epoch or 0))


def with_lengths(dataset, tokenizer):
    """Adds the approximate token count of each row (text + audio placeholder tokens) as
    `length`, for the training sampler (pronounce.training.sampler) (in memory: caching is off)."""
    texts = list(dataset["text"])
    text_tokens = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    # The feature extractor makes a frame per 10 ms; the encoder keeps one token per 8 frames.
    audio_tokens = [math.ceil(d * 100 / 8) for d in list(dataset["duration"])]
    return dataset.add_column("length", [t + a for t, a in zip(text_tokens, audio_tokens)])


# What a checkpoint needs to resume (transformers writes trainer_state.json last, so a kill
# while saving leaves a folder without it or with it unparsable); rng_state_<rank>.pth under DDP.
CHECKPOINT_FILES = (*ADAPTER_FILES, "optimizer.pt", "scheduler.pt", "trainer_state.json")


def complete(checkpoint: Path) -> bool:
    if not all((checkpoint / f).is_file() for f in CHECKPOINT_FILES) or not list(checkpoint.glob("rng_state*.pth")):
        return False
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unparsable, or removed meanwhile by rank 0 (latest_checkpoint)
        return False
    return True


def latest_checkpoint(run_dir: Path, clean: bool = True) -> Path | None:
    """The newest complete checkpoint. With `clean`, newer partial ones (a kill while saving)
    are removed, so the trainer does not write its next checkpoint over a partial folder's files."""
    ckpts = sorted((p for p in run_dir.glob("checkpoint-*") if p.name.split("-")[1].isdigit()),
                   key=lambda p: int(p.name.split("-")[1]), reverse=True)
    for ckpt in ckpts:
        if complete(ckpt):
            return ckpt
        if clean:
            shutil.rmtree(ckpt, ignore_errors=True)
    return None


def run_train(job: TrainJob, base_dir, decoded_dir, materialized_dir, out_dir, live_dir, runs_dir="runs",
              callbacks=()) -> dict | None:
    """Train config `job.name`; returns its timing, or None in a DDP process other than rank 0."""
    import datasets

    from ..model.manifest import base_attn_implementation, read_manifest, resolve_base

    check_device(job)
    datasets.disable_caching()  # never write cache files into data/materialized (a DVC input)
    name, recipe, processes = job.name, job.recipe, job.num_processes
    base, revision = resolve_base(base_dir)

    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by the launcher in each DDP process
    if world != processes:  # e.g. a launcher configured for another number of processes
        raise ParamsError(f"params.yaml: train.num_processes is {processes} but this run has {world} "
                          f"process(es): set train.num_processes to the launcher's world size")
    # A checkpoint resumes only under the same number of processes (its sampler and RNG states).
    key = fingerprint(*params_parts(job), dir_digest(Path(materialized_dir)), dir_digest(Path(base_dir)))
    run_dir = Path(runs_dir) / name / key
    run_dir.mkdir(parents=True, exist_ok=True)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(runs_dir) / name / "tensorboard" / key)

    # Seed before the adapter is created: LoRA's A matrices are drawn from the global RNG.
    set_determinism(job.seed, job.determinism)
    if recipe.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(recipe.cpu_threads)
    processor = load_processor(base, revision)
    model = training_model(job, base, revision, processor, base_attn_implementation(base_dir))

    store = AudioStore(Path(decoded_dir) / "train.arrow")
    collator = PronunciationCollator(processor, audio_lookup=lambda row: store[row["audio_row"]])
    epoch_adapters = EpochAdapters(run_dir)
    trainer = trainer_class()(
        model=model,
        args=sft_config(recipe, run_dir, job.seed, processes),
        train_dataset=with_lengths(load_instances(materialized_dir, "train"), processor.tokenizer),
        data_collator=collator,
        processing_class=processor,
        callbacks=[LiveLogger(Path(live_dir)), epoch_adapters, *callbacks],
        audio_learning_rate=recipe.audio_learning_rate,
    )
    install_tied_token_head(model)  # a tied lm_head's token rows in trl's fused head (adapters.py)
    # Every rank finds the same newest complete checkpoint; only rank 0 removes partial ones.
    resume = latest_checkpoint(run_dir, clean=trainer.is_world_process_zero())
    if trainer.is_world_process_zero():
        epoch_adapters.recover(resume)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    if not trainer.is_world_process_zero():  # under DDP only rank 0 writes the outputs
        return None

    epochs = saved_epochs(run_dir)
    if sorted(epochs) != list(range(1, recipe.epochs + 1)):  # never an output silently short of an epoch
        raise PipelineError(f"training of {name} ended with epoch adapters {sorted(epochs)}, not 1..{recipe.epochs} "
                            f"(a checkpoint folder edited by hand?): delete {run_dir} and rerun the stage")
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp / "adapter"))
        _scrub_adapter_config(tmp / "adapter")
        for k, epoch_dir in sorted(epochs.items()):  # linked, not copied: run_dir goes next
            shutil.copytree(epoch_dir, tmp / epoch_dir.name, copy_function=_link_or_copy)
        for f in ADAPTER_FILES:  # the final adapter is the last epoch's: one file on disk, not two
            final, last = tmp / "adapter" / f, tmp / f"epoch-{recipe.epochs}" / f
            if filecmp.cmp(final, last, shallow=False):
                final.unlink()
                _link_or_copy(last, final)
        processor.save_pretrained(str(tmp / "processor"))
        write_json(tmp / TRAINING_RECORD, training_record(job, read_manifest(base_dir)))
    shutil.rmtree(run_dir)  # finished: nothing left to resume
    # Wall-clock figures vary run to run: kept out of every hashed output.
    timing = {"config": name, "seconds": seconds, "resumed_from": resume.name if resume else None,
              "steps": result.global_step, "train_loss": result.training_loss, "processes": world}
    write_json(Path(runs_dir) / name / "timing.json", timing)
    return timing


def training_record(job: TrainJob, base_manifest: dict) -> dict:
    """What the adapters were trained from, for whoever uses them later (`pronounce assess`):
    the base model as params named it (`builtin:tiny` for the embedded default) and the commit
    it resolved to, the recipe by name and its epochs, the config and seed."""
    return {"config": job.name, "profile": job.profile, "epochs": job.recipe.epochs, "seed": job.seed,
            "base": base_manifest.get("base"), "revision": base_manifest.get("commit") or base_manifest.get("revision")}


def _link_or_copy(src, dst) -> None:
    """A hard link where the filesystem has them (an r=320 run's epoch adapters are 7.4 GB)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _scrub_adapter_config(folder: Path) -> None:
    """adapter_config.json names the base model's path; make it machine-independent."""
    path = folder / "adapter_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = None
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
