"""Stage `train`: SFT of one config's LoRA adapter with trl's SFTTrainer.

Outputs, under models/<config>/:
  adapter/          the final adapter (PeftModel.from_pretrained(base, ...) loads it), with
                    any fully trained modules (lm_head, or the audio encoder + projector of the
                    Unfreeze strategy) saved inside it as PEFT `modules_to_save`
  epoch-<k>/        the adapter after each epoch (what evaluation of epochs 1..N reads)
  processor files   the processor the adapter was trained with
The last checkpoint (with optimizer state) lives in runs/<config>/<fingerprint>/ (not a DVC
output) while training runs: a rerun after an interruption, with the same inputs and params,
resumes from it; a change of either gets a new fingerprint and starts fresh, so nobody
resumes someone else's checkpoint. A finished run deletes its checkpoints, so `dvc repro -f`
really retrains.
"""

import hashlib
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from .artifacts import AudioStore, atomic_dir, dir_digest, write_json
from .checkpoints import ADAPTER_FILES
from .collator import PronunciationCollator
from .determinism import set_determinism
from .errors import ParamsError
from .materialize import load_instances
from . import prompts
from .guards import check_audio_token
from .model import check_vocab, load_base_model, load_processor, speech_lora_path

AUDIO_MODULES = (  # the Unfreeze strategy's audio encoder and speech projector
    "model.embed_tokens_extend.audio_embed.encoder",
    "model.embed_tokens_extend.audio_embed.up_proj_for_speech",
    "model.embed_tokens_extend.audio_embed.down_proj_for_speech",
)
STABLE_LOG_KEYS = ("loss", "learning_rate", "grad_norm", "epoch")  # wall-clock-free, so reruns match


def lora_config(cfg: dict, params: dict, base: str, revision, token_ids=None):
    """The LoraConfig of a config: fresh from `lora`, or copied from the speech LoRA's own.
    `token_ids`: embedding rows trained alongside the adapter (PEFT's trainable tokens: the
    control tokens, see control_token_ids), saved in and restored from the adapter file."""
    from peft import LoraConfig

    modules_to_save = []
    if cfg["unfreeze_audio"]:
        modules_to_save += list(AUDIO_MODULES)
    if params["_recipe"]["train_lm_head"]:
        modules_to_save.append("lm_head")
    if cfg["init"] == "fresh":
        lora = params["lora"]
        return LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                          target_modules=lora["target_modules"], modules_to_save=modules_to_save or None,
                          trainable_token_indices=token_ids or None, task_type="CAUSAL_LM"), None
    folder = speech_lora_path(base, revision)
    own = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    return LoraConfig(r=own["r"], lora_alpha=own["lora_alpha"], lora_dropout=own["lora_dropout"],
                      target_modules=own["target_modules"], modules_to_save=modules_to_save or None,
                      trainable_token_indices=token_ids or None, task_type="CAUSAL_LM"), folder


def load_pretrained_lora(model, folder: Path) -> None:
    """Copy the speech LoRA's weights into the model's (fresh) adapter of the same shape.

    Copied tensor by tensor rather than with PeftModel.from_pretrained: the real speech-lora
    stores its keys without PEFT's `base_model.model.` prefix (from_pretrained would only warn
    and leave lora_B at zero), and our adapter may carry modules_to_save the speech LoRA lacks.
    Every LoRA weight of the model must be covered, and every tensor of the file used."""
    weights = {re.sub(r"^base_model\.model\.", "", k): v
               for k, v in load_file(str(folder / "adapter_model.safetensors")).items()}
    params = {n.removeprefix("base_model.model."): p for n, p in model.named_parameters() if ".lora_" in n}
    targets = {k.replace(".weight", ".default.weight"): v for k, v in weights.items()}
    if set(targets) != set(params):
        raise RuntimeError(f"speech LoRA {folder} does not fit the model: missing "
                           f"{sorted(set(params) - set(targets))[:3]}, unexpected {sorted(set(targets) - set(params))[:3]}")
    with torch.no_grad():
        for name, value in targets.items():
            params[name].copy_(value)


def control_token_ids(processor) -> list[int]:
    """The ids of the task tokens <|APA|>/<|MDD|>. The real tokenizer gives them ids inside its
    padded embedding, rows the model never trained (tied to lm_head): a LoRA alone cannot move
    them, so they are trained as PEFT trainable tokens, exactly these rows and no others."""
    tokenizer = processor.tokenizer
    tokens = list(prompts.CONTROL_TOKENS.values())
    ids = tokenizer.convert_tokens_to_ids(tokens)
    if any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise RuntimeError(f"the tokenizer has no id for {tokens} (got {ids}): load it with pronounce.model.load_processor")
    return ids


def build_peft_model(model, cfg: dict, params: dict, base: str, revision, processor):
    """The model with its adapter to train: LoRA (fresh or the speech LoRA's weights), the
    control tokens' embedding rows, any modules_to_save; every trainable weight in fp32."""
    from peft import get_peft_model

    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    if tied and params["_recipe"]["train_lm_head"]:
        raise ParamsError("params.yaml: train.recipes.*.train_lm_head is true but this base model ties lm_head to "
                          "its input embedding (the whole 200k-row matrix would train); set it to false")
    peft_cfg, pretrained = lora_config(cfg, params, base, revision, control_token_ids(processor))
    model = get_peft_model(model, peft_cfg)
    if pretrained is not None:
        load_pretrained_lora(model, pretrained)
    if tied:
        check_tied_tokens(model)
    upcast_trainable(model)
    return model


def check_tied_tokens(model) -> None:
    """With tied embeddings, lm_head must read the same trainable token rows as the input
    embedding (PEFT ties them for a list of indices); otherwise the output side of the
    control tokens would silently stay untrained."""
    inner = model.get_base_model()
    emb, head = inner.get_input_embeddings(), inner.get_output_embeddings()
    adapter = getattr(emb, "token_adapter", None)
    if adapter is None or getattr(getattr(head, "token_adapter", None), "tied_adapter", None) is not adapter:
        raise RuntimeError("the base model ties lm_head to its input embedding but PEFT did not tie their trainable "
                           "token rows (check the installed peft version)")


def upcast_trainable(model) -> int:
    """fp32 master weights for every trainable parameter of a bf16/fp16 model: the Unfreeze
    strategy's audio modules and lm_head (PEFT's modules_to_save copies keep the model's
    dtype; LoRA and token rows PEFT already upcasts). An AdamW update at lr 2e-5 is below half
    a bf16 ulp of most weights and would round away. Frozen weights stay as loaded; the
    trainer's autocast runs the matmuls in bf16. Returns how many tensors were upcast."""
    n = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()
            n += 1
    return n


def fingerprint(*parts) -> str:
    """Hash of everything a training run depends on: resume only within the same fingerprint."""
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def precision_flags(precision: str) -> dict:
    has_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not has_bf16:
        raise ParamsError("params.yaml: train.recipes.*.precision is bf16 but this machine has no bf16 GPU")
    return {"bf16": precision == "bf16" or (precision == "auto" and has_bf16), "fp16": False}


def sft_config(recipe: dict, run_dir: Path, seed: int, num_processes: int = 1):
    """The trainer's arguments for a recipe, run as `num_processes` DDP processes: each
    accumulates grad_accum / N batches, so the effective batch stays the recipe's
    batch_size x grad_accum (params.py refuses an N that does not divide grad_accum)."""
    from trl import SFTConfig

    if recipe["grad_accum"] % num_processes:
        raise ParamsError(f"params.yaml: train.num_processes {num_processes} does not divide the recipe's "
                          f"grad_accum {recipe['grad_accum']}")
    return SFTConfig(
        output_dir=str(run_dir),
        num_train_epochs=recipe["epochs"],
        per_device_train_batch_size=recipe["batch_size"],
        gradient_accumulation_steps=recipe["grad_accum"] // num_processes,
        learning_rate=recipe["learning_rate"],
        lr_scheduler_type=recipe["lr_scheduler"],
        warmup_steps=recipe["warmup_ratio"],  # a float in [0, 1) is a ratio of all steps
        optim=recipe["optim"],
        max_length=recipe["max_length"],
        logging_steps=recipe["logging_steps"],
        activation_checkpointing=recipe["gradient_checkpointing"],
        **precision_flags(recipe["precision"]),
        save_strategy="epoch",
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
        # Batches of similar length: APA instances (a long prompt) apart from MDD ones, so short
        # rows are not padded to long ones, and the audio encoder's weak padding mask sees
        # batch-mates of like length (see README).
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
    """Copies each epoch's adapter out of its checkpoint before the trainer rotates it away."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        ckpt = self.run_dir / f"checkpoint-{state.global_step}"
        dst = self.run_dir / "epochs" / f"epoch-{round(state.epoch)}"
        dst.mkdir(parents=True, exist_ok=True)
        for f in ADAPTER_FILES:
            shutil.copy2(ckpt / f, dst / f)
        _scrub_adapter_config(dst)


def trainer_class():
    """trl's SFTTrainer, its length-grouped sampler grouping by the recipe's effective batch.

    transformers groups rows by the per-process batch x accumulation, a group that shrinks N
    times under N processes: the micro-batches, and so their padding (which the audio encoder
    does not fully mask), would differ from one process's. Grouped by the effective batch,
    N processes train on exactly the micro-batches one process would (tested)."""
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from trl import SFTTrainer

    class Trainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, LengthGroupedSampler):
                sampler.batch_size *= self.args.world_size
            return sampler

    return Trainer


def with_lengths(dataset, tokenizer):
    """Adds the approximate token count of each row (text + audio placeholder tokens) as
    `length`, for the length-grouped sampler (in memory: caching is off)."""
    texts = list(dataset["text"])
    text_tokens = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    # The feature extractor makes a frame per 10 ms; the encoder keeps one token per 8 frames.
    audio_tokens = [math.ceil(d * 100 / 8) for d in list(dataset["duration"])]
    return dataset.add_column("length", [t + a for t, a in zip(text_tokens, audio_tokens)])


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    complete = [c for c in ckpts if (c / "trainer_state.json").is_file()]
    return complete[-1] if complete else None


def training_model(params: dict, name: str, source, revision, processor, attn_implementation: str):
    """The model config `name` trains: the base model, checked against the processor, in its
    adapter. One set-up for the train stage and the preflight, so a preview is the real run."""
    recipe = params["train"]["recipes"][params["train"]["profile"]]
    # bf16 weights only where the trainer autocasts to bf16 (trainable ones then upcast to fp32
    # master weights by build_peft_model); without autocast, fp32 throughout.
    bf16 = precision_flags(recipe["precision"])["bf16"]
    model = load_base_model(source, revision, dtype=torch.bfloat16 if bf16 else torch.float32,
                            attn_implementation=attn_implementation)
    check_audio_token(model, processor)
    check_vocab(model, processor)
    return build_peft_model(model, params["configs"][name], {**params, "_recipe": recipe}, source, revision,
                            processor)


def run_train(params: dict, name: str, base_dir, decoded_dir, materialized_dir, out_dir, live_dir,
              runs_dir="runs", callbacks=()) -> dict | None:
    """Train config `name`; returns its timing, or None in a DDP process other than rank 0."""
    import datasets

    from .base_manifest import base_attn_implementation, resolve_base

    datasets.disable_caching()  # never write cache files into data/materialized (a DVC input)
    cfg = params["configs"][name]
    recipe = params["train"]["recipes"][params["train"]["profile"]]
    params = {**params, "_recipe": recipe}
    base, revision = resolve_base(base_dir)

    processes = params["train"]["num_processes"]
    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by the launcher in each DDP process
    if world != processes:  # e.g. a launcher configured for another number of processes
        raise ParamsError(f"params.yaml: train.num_processes is {processes} but this run has {world} "
                          f"process(es): set train.num_processes to the launcher's world size")
    # A checkpoint resumes only under the same number of processes (its sampler and RNG states).
    key = fingerprint(cfg, params[cfg["lora_params"]], recipe, params["seed"], processes,
                      dir_digest(Path(materialized_dir)), dir_digest(Path(base_dir)))
    run_dir = Path(runs_dir) / name / key
    run_dir.mkdir(parents=True, exist_ok=True)
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(runs_dir) / name / "tensorboard" / key)

    # Seed before the adapter is created: LoRA's A matrices are drawn from the global RNG.
    set_determinism(params["seed"], params["train"]["determinism"])
    if recipe["cpu_threads"] and not torch.cuda.is_available():
        torch.set_num_threads(recipe["cpu_threads"])
    processor = load_processor(base, revision)
    model = training_model(params, name, base, revision, processor, base_attn_implementation(base_dir))

    store = AudioStore(Path(decoded_dir) / "train.arrow")
    collator = PronunciationCollator(processor, audio_lookup=lambda row: store[row["audio_row"]])
    trainer = trainer_class()(
        model=model,
        args=sft_config(recipe, run_dir, params["seed"], processes),
        train_dataset=with_lengths(load_instances(materialized_dir, "train"), processor.tokenizer),
        data_collator=collator,
        processing_class=processor,
        callbacks=[LiveLogger(Path(live_dir)), EpochAdapters(run_dir), *callbacks],
    )
    resume = latest_checkpoint(run_dir)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    if not trainer.is_world_process_zero():  # under DDP only rank 0 writes the outputs
        return None

    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(str(tmp / "adapter"))
        _scrub_adapter_config(tmp / "adapter")
        for epoch_dir in sorted((run_dir / "epochs").iterdir()):
            shutil.copytree(epoch_dir, tmp / epoch_dir.name)
        processor.save_pretrained(str(tmp / "processor"))
    shutil.rmtree(run_dir)  # finished: nothing left to resume
    # Wall-clock figures vary run to run: kept out of every hashed output.
    timing = {"config": name, "seconds": seconds, "resumed_from": resume.name if resume else None,
              "steps": result.global_step, "train_loss": result.training_loss, "processes": world}
    write_json(Path(runs_dir) / name / "timing.json", timing)
    return timing


def _scrub_adapter_config(folder: Path) -> None:
    """adapter_config.json names the base model's path; make it machine-independent."""
    path = folder / "adapter_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["base_model_name_or_path"] = None
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
