"""The model a config trains: the base model in its adapter. LoRA (fresh from `lora`, or the
base model's own speech LoRA trained further), the control tokens' embedding rows as PEFT
trainable tokens, the Unfreeze strategy's audio modules and lm_head as modules_to_save, every
trainable weight in fp32. One set-up for the train stage and the preflight.
"""

import functools
import json
import re
import types
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..core.errors import ParamsError, PipelineError
from ..core.params import TrainJob
from ..model.guards import check_audio_token
from ..model.loader import load_base_model, speech_lora_path
from ..model.processor import check_vocab
from ..task import prompts

# The Unfreeze strategy's modules (the paper's section 3.2: "the Audio Encoder and Audio Projector
# layers"), as transformers' native Phi4MultimodalForCausalLM names them: the conformer encoder and
# the two layers of the speech projection (up, GELU, down) that audio-only input goes through
# (audio_projection_mode "speech"). The *_for_vision_speech pair serves audio with an image: no
# gradient reaches it here, so it stays frozen. Trained as PEFT modules_to_save (a trainable copy,
# saved inside the adapter, restored by PeftModel.from_pretrained); tested by name and count.
AUDIO_MODULES = (
    "model.embed_tokens_extend.audio_embed.encoder",
    "model.embed_tokens_extend.audio_embed.up_proj_for_speech",
    "model.embed_tokens_extend.audio_embed.down_proj_for_speech",
)


def audio_parameters(model) -> list:
    """The trainable weights of AUDIO_MODULES (their modules_to_save copies): none unless the
    config unfreezes the audio path. Found by module, not by name, so lm_head's copy is not one."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return [p for m in AUDIO_MODULES for p in inner.get_submodule(m).parameters() if p.requires_grad]


# The speech LoRA's adapter_config.json, field by field. CARRIED: what shapes or scales the
# adapter, copied as the file says (load_pretrained_lora then refuses weights that do not fit).
# OURS: set by the config being trained, or bookkeeping and run-time settings that change no
# weight. Any other field (initialisation schemes, quantisation, layer replication, or one this
# peft does not know) is refused by name unless it holds its default: copying it blindly or
# dropping it silently would train another adapter than the file describes.
SPEECH_LORA_CARRIED = ("r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "rank_pattern",
                       "alpha_pattern", "use_rslora", "use_dora", "bias", "fan_in_fan_out", "layers_to_transform",
                       "layers_pattern", "target_parameters")
SPEECH_LORA_OURS = ("modules_to_save", "trainable_token_indices", "task_type", "peft_type", "inference_mode",
                    "base_model_name_or_path", "revision", "auto_mapping", "peft_version", "runtime_config",
                    "init_lora_weights")  # init: the weights are copied over it (a base-modifying one is refused below)


def speech_lora_fields(own: dict, where) -> dict:
    """The LoraConfig arguments carried from the speech LoRA's adapter_config.json (`own`)."""
    import dataclasses

    from peft import LoraConfig

    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(LoraConfig)}
    refused = []
    for key, value in sorted(own.items()):
        if key in SPEECH_LORA_CARRIED or key in SPEECH_LORA_OURS:
            continue
        default = defaults.get(key, None)
        if value != default and not (key not in defaults and value in (None, False, {}, [], "")):
            refused.append(f"{key}={value!r}")
    if own.get("modules_to_save") or own.get("trainable_token_indices"):
        refused += [f"{k}={own[k]!r}" for k in ("modules_to_save", "trainable_token_indices") if own.get(k)]
    if own.get("init_lora_weights", True) not in (True, False, "gaussian"):  # pissa, olora, ...: they rewrite the base
        refused.append(f"init_lora_weights={own['init_lora_weights']!r}")
    if refused:
        raise PipelineError(f"speech LoRA {where}/adapter_config.json sets {', '.join(refused)}, which "
                            f"pretrained_r320's copy does not carry: the adapter trained would not be that one")
    missing = [k for k in ("r", "lora_alpha", "target_modules") if k not in own]
    if missing:
        raise PipelineError(f"speech LoRA {where}/adapter_config.json has no {', '.join(missing)}")
    return {k: own[k] for k in SPEECH_LORA_CARRIED if k in own}


def lora_config(job: TrainJob, base: str, revision, token_ids=None):
    """The LoraConfig of a config: fresh from `job.lora`, or copied from the speech LoRA's own
    (every field that changes the adapter: speech_lora_fields).
    `token_ids`: embedding rows trained alongside the adapter (PEFT's trainable tokens: the
    control tokens, see control_token_ids), saved in and restored from the adapter file."""
    from peft import LoraConfig

    modules_to_save = []
    if job.config.unfreeze_audio:
        modules_to_save += list(AUDIO_MODULES)
    if job.recipe.train_lm_head:
        modules_to_save.append("lm_head")
    if job.config.init == "fresh":
        lora = job.lora
        return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=lora.target_modules, modules_to_save=modules_to_save or None,
                          trainable_token_indices=token_ids or None, task_type="CAUSAL_LM"), None
    folder = speech_lora_path(base, revision)
    own = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    return LoraConfig(**speech_lora_fields(own, folder), modules_to_save=modules_to_save or None,
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
        raise RuntimeError(f"the tokenizer has no id for {tokens} (got {ids}): load it with pronounce.model.processor.load_processor")
    return ids


def build_peft_model(model, job: TrainJob, base: str, revision, processor):
    """The model with its adapter to train: LoRA (fresh or the speech LoRA's weights), the
    control tokens' embedding rows, any modules_to_save; every trainable weight in fp32."""
    from peft import get_peft_model

    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    if tied and job.recipe.train_lm_head:
        raise ParamsError("params.yaml: train.recipes.*.train_lm_head is true but this base model ties lm_head to "
                          "its input embedding (the whole 200k-row matrix would train); set it to false")
    peft_cfg, pretrained = lora_config(job, base, revision, control_token_ids(processor))
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


FUSED_OUTPUTS = ("log_probs", "entropy", "is_top1")  # what trl's SFTTrainer asks its fused head for
FUSED_CHUNK = 32768  # vocabulary rows per tile, as trl's own fused head


def install_tied_token_head(model) -> bool:
    """Make trl's fused LM head train a tied model's task-token rows; True if installed.

    trl's SFTTrainer trains through a fused head (trl.trainer.utils.add_fused_lm_head) that
    reads `lm_head.weight` and `lm_head.bias`. On a tied model PEFT's TrainableTokensWrapper is
    that lm_head: it has no `bias` (the first step fails), and its `weight` is the whole merged
    matrix, whose gradient the kernel builds in full (vocab x hidden, fp32) to train 2 rows.
    Installed on the base model after the trainer (its forward wraps trl's, which the trainer
    sets), this forward computes the same log-probabilities from the frozen matrix with the
    trainable rows zeroed and the rows' logits fed in as extra hidden features (one extra
    weight column each, 1 on the row): the kernel's gradient then reaches the rows through the
    hidden features, and no matrix gradient exists. A model without tied token rows is left
    as it is. Tested: the loss and the rows' gradient equal the plain forward's."""
    from peft.utils.other import TrainableTokensWrapper

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not isinstance(base.get_output_embeddings(), TrainableTokensWrapper):
        return False
    if "forward" not in vars(base):
        raise RuntimeError("install_tied_token_head goes after the SFTTrainer is built (its fused head wraps trl's)")
    base.forward = types.MethodType(functools.wraps(type(base).forward)(
        functools.partial(_tied_token_forward, trl_forward=base.forward)), base)
    return True


def _tied_token_forward(self, *args, trl_forward, fused_lm_head=False, labels=None, num_items_in_batch=None,
                        **kwargs):
    """trl's fused forward for a tied lm_head with trainable token rows (install_tied_token_head)."""
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import FusedCausalLMOutput

    if not fused_lm_head:
        return trl_forward(*args, labels=labels, num_items_in_batch=num_items_in_batch, **kwargs)
    if kwargs.get("shift_labels") is not None:
        raise NotImplementedError("pre-shifted labels (context or sequence parallelism) with a tied lm_head's token "
                                  "rows: train on one sequence per process")
    kwargs["use_cache"] = False
    hidden = self.model(*args, **kwargs).last_hidden_state[:, :-1]
    labels = labels[:, 1:].to(hidden.device)
    mask = labels != -100
    layer = self.get_output_embeddings().token_adapter
    frozen = layer.base_layer.weight  # the input embedding's matrix, as loaded
    names = [] if layer.disable_adapters else list(layer.active_adapters)  # disabled: the base model's rows
    rows = torch.tensor([i for name in names for i in layer.token_indices[name]], dtype=torch.long,
                        device=frozen.device)
    trained = torch.cat([layer.trainable_tokens_delta[name] for name in names] + [frozen.new_zeros(0, frozen.shape[1])])
    h = hidden[mask]
    columns = torch.zeros(frozen.shape[0], len(rows), dtype=frozen.dtype, device=frozen.device)
    columns[rows, torch.arange(len(rows), device=frozen.device)] = 1
    weight = torch.cat([frozen.detach(), columns], dim=1)
    weight[rows, :frozen.shape[1]] = 0  # those rows' logits come from their extra column only
    features = torch.cat([h, (h @ trained.to(h.dtype).T).to(h.dtype)], dim=1)
    per_token = ChunkedLogProbFunction.apply(features, weight, None, labels[mask], 1.0, FUSED_CHUNK, None, 1.0,
                                             FUSED_OUTPUTS)
    log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1 = (
        None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in per_token)
    loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
    return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, log_sum_sq_probs=log_sum_sq_probs,
                               mean_logits=mean_logits, is_top1=is_top1, label_mask=mask, aux_loss=None)


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


def precision_flags(precision: str) -> dict:
    """The trainer's precision flags for a recipe's `precision`: auto (bf16 where a bf16 GPU is,
    else fp32), bf16 (a bf16 GPU or an error), bf16-any (bf16 on any device, a CPU included: CPU
    autocast is slow, but the full-size model's fp32 weights alone are 19 GB; see pronounce.checks.fullsize)."""
    has_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not has_bf16:
        raise ParamsError("params.yaml: train.recipes.*.precision is bf16 but this machine has no bf16 GPU "
                          "(bf16-any allows a CPU)")
    return {"bf16": precision in ("bf16", "bf16-any") or (precision == "auto" and has_bf16), "fp16": False}


def training_model(job: TrainJob, source, revision, processor, attn_implementation: str, base_model=None):
    """The model config `job.name` trains: the base model, checked against the processor, in its
    adapter. One set-up for the train stage and the preflight, so a preview is the real run.
    `base_model`: a base model already built in the recipe's dtype (the full-size check's random
    weights, pronounce.checks.fullsize) instead of loading `source`'s weights."""
    # bf16 weights only where the trainer autocasts to bf16 (trainable ones then upcast to fp32
    # master weights by build_peft_model); without autocast, fp32 throughout.
    model = base_model
    if model is None:
        bf16 = precision_flags(job.recipe.precision)["bf16"]
        model = load_base_model(source, revision, dtype=torch.bfloat16 if bf16 else torch.float32,
                                attn_implementation=attn_implementation)
    check_audio_token(model, processor)
    check_vocab(model, processor)
    return build_peft_model(model, job, source, revision, processor)
