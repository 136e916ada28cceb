"""The control tokens' embedding rows train with the adapter (PEFT trainable tokens), through
trl's fused head on a tied lm_head as the real model's, and the trainable weights of a bf16
model are fp32 master weights."""

import copy
from dataclasses import replace

import pytest
import torch
from conftest import raw_params
from safetensors.torch import load_file

from pronounce.core.errors import ParamsError
from pronounce.core.params import ConfigParams, parse_params
from pronounce.model.loader import load_base_model, real_config
from pronounce.model.processor import load_processor
from pronounce.model.tiny import TINY_HIDDEN
from pronounce.task import prompts
from pronounce.training.adapters import build_peft_model, control_token_ids, install_tied_token_head, lora_config
from pronounce.training.train import run_train, sft_config, trainer_class


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def workspace(training_ws):
    return training_ws  # the test run's, read only


@pytest.fixture
def params():
    raw = raw_params()
    raw["train"]["recipes"]["smoke"].update(epochs=1, batch_size=4, logging_steps=1, learning_rate=3e-3)
    raw["train"]["profile"] = "smoke"
    return parse_params(raw)


def paper_job(params, name="paper_r64", config=None, **recipe):
    """Config `name` (or `config` under that name) trained under the paper's recipe, with `recipe` changed."""
    job = params.train_job(name)
    return replace(job, config=config or job.config, recipe=replace(params.train.recipes["paper"], **recipe))


def embedding_rows(model) -> torch.Tensor:
    """Every row of the input embedding as the model sees it (a trainable-tokens wrapper adds its delta)."""
    emb = model.get_input_embeddings()
    with torch.no_grad():
        return emb(torch.arange(emb.num_embeddings if hasattr(emb, "num_embeddings")
                                else model.config.vocab_size)).float()


def train_batch(workspace, processor, n=4):
    from pronounce.data.audio import AudioStore
    from pronounce.task.materialize import load_instances
    from pronounce.training.collator import PronunciationCollator

    store = AudioStore(workspace / "decoded" / "train.arrow")
    collate = PronunciationCollator(processor, audio_lookup=lambda r: store[r["audio_row"]])
    return collate(load_instances(workspace / "materialized", "train").select(range(n)).to_list())


class AllocatedRows:
    """Records the ops that allocate a (vocabulary x anything) tensor: a full-matrix gradient."""

    def __init__(self, vocab: int):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_leaves

        seen = self.ops = []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
                seen.extend(str(func) for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.dim() == 2
                            and t.shape[0] == vocab and t.untyped_storage().data_ptr() not in inputs)  # not a view
                return out

        self.mode = Mode()


def test_the_fused_loss_on_the_tied_model_is_the_plain_loss_without_a_full_matrix_gradient(workspace, params,
                                                                                           tmp_path):
    """builtin:tiny ties lm_head, as the real model: trl's fused head alone crashes on PEFT's
    wrapper (no `bias`); with install_tied_token_head, as run_train sets up, the fused loss and
    the gradients of the token rows and the LoRA equal the model's own (unfused) forward's, and
    the backward allocates no vocabulary-sized matrix but PEFT's input embedding's gradient."""
    import datasets

    processor = load_processor(workspace / "base")
    job = params.train_job("paper_r64")
    model = build_peft_model(load_base_model(workspace / "base"), job, str(workspace / "base"), None, processor)
    assert model.get_base_model().config.tie_word_embeddings
    batch = train_batch(workspace, processor)
    trainer_class()(model=model, args=sft_config(job.recipe, tmp_path, job.seed),
                    train_dataset=datasets.Dataset.from_list([{"x": 0}]), processing_class=processor)
    with pytest.raises(AttributeError, match="bias"):  # trl 1.16 as it is: if this passes, re-read its fused head
        model(**batch, fused_lm_head=True)
    assert install_tied_token_head(model)
    model.train()
    rows = AllocatedRows(model.get_base_model().config.vocab_size)

    def loss_and_grads(**fused):
        model.zero_grad()
        torch.manual_seed(5)  # the same LoRA dropout masks
        loss = model(**batch, **fused).loss
        rows.ops.clear()
        with rows.mode:
            loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return loss.item(), grads, list(rows.ops)

    fused_loss, fused, fused_ops = loss_and_grads(fused_lm_head=True)
    plain_loss, plain, plain_ops = loss_and_grads()
    # fp32 throughout; the kernel tiles the vocabulary and sums its exponentials in another order
    assert fused_loss == pytest.approx(plain_loss, rel=1e-6)
    assert fused.keys() == plain.keys() and any("trainable_tokens_delta" in n for n in fused)
    for name in fused:
        torch.testing.assert_close(fused[name], plain[name], rtol=1e-4, atol=1e-7, msg=name)
    assert fused_ops == ["aten.embedding_dense_backward.default"], fused_ops  # the input side, PEFT's
    assert any("mm" in op for op in plain_ops), plain_ops  # the unfused head's matrix gradient


@pytest.mark.slow  # trains
@pytest.mark.parametrize("name", ["paper_r64", "pretrained_r320"])
def test_training_moves_exactly_the_control_token_rows_and_they_round_trip(workspace, params, tmp_path, name):
    """Through run_train on the tied tiny model: the two rows train, are saved in the adapter,
    reload (PeftModel and the evaluate stage's loader) and lm_head reads them (tied)."""
    from peft import PeftModel

    from pronounce.evaluation.generation import load_model

    processor = load_processor(workspace / "base")
    ids = control_token_ids(processor)
    assert processor.tokenizer.convert_ids_to_tokens(ids) == [prompts.APA_TOKEN, prompts.MDD_TOKEN]
    run_train(params.train_job(name), workspace / "base", workspace / "decoded", workspace / "materialized",
              tmp_path / "model", tmp_path / "live", runs_dir=tmp_path / "runs")
    adapter = tmp_path / "model" / "adapter"
    saved = load_file(adapter / "adapter_model.safetensors")
    deltas = [k for k in saved if "trainable_tokens_delta" in k]
    assert len(deltas) == 1 and saved[deltas[0]].shape == (2, TINY_HIDDEN), deltas
    assert not any("lm_head" in k for k in saved), "the tied lm_head is the embedding: nothing of its own saved"
    assert not any("embed_tokens.weight" in k for k in saved), "only the two rows, never the whole embedding"

    base = load_base_model(workspace / "base")
    assert base.config.tie_word_embeddings
    before = embedding_rows(base)
    loaded = PeftModel.from_pretrained(load_base_model(workspace / "base"), str(adapter))
    after = embedding_rows(loaded)
    changed = (after != before).any(dim=1).nonzero().flatten().tolist()
    assert changed == ids
    # PEFT's "delta" holds the rows themselves (it replaces them rather than adding)
    torch.testing.assert_close(after[ids], saved[deltas[0]].float(), rtol=0, atol=0)
    # the evaluate stage's loader restores them too (and passes the audio-token guard)
    evaluated = load_model(str(workspace / "base"), None, processor, adapter)
    torch.testing.assert_close(embedding_rows(evaluated), after, rtol=0, atol=0)
    for model in (loaded, evaluated):  # and the tied lm_head scores with the trained rows
        hidden = torch.randn(3, TINY_HIDDEN, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            logits = model.get_output_embeddings()(hidden)
        torch.testing.assert_close(logits, hidden @ after.T, rtol=1e-5, atol=1e-5)
    for epoch_dir in (tmp_path / "model").glob("epoch-*"):
        assert any("trainable_tokens_delta" in k for k in load_file(epoch_dir / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def real_meta():
    from transformers import Phi4MultimodalForCausalLM

    with torch.device("meta"):
        return Phi4MultimodalForCausalLM(real_config())


def test_real_model_ties_lm_head_to_the_same_token_rows(real_meta, params):
    """The real model ties lm_head to the embedding: both must read one set of trainable rows."""
    from peft import get_peft_model

    from pronounce.training.adapters import check_tied_tokens

    assert real_meta.config.tie_word_embeddings
    ids = [200025, 200026]  # new special tokens land in the padding rows (vocab 200064)
    peft_cfg, _ = lora_config(paper_job(params), "unused", None, ids)
    model = get_peft_model(copy.deepcopy(real_meta), peft_cfg)
    check_tied_tokens(model)
    trainable = {n: tuple(t.shape) for n, t in model.named_parameters() if t.requires_grad and ".lora_" not in n}
    assert trainable == {"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta.default": (2, 3072)}
    head = model.get_base_model().lm_head
    assert head.token_adapter.token_indices["default"] == ids


def test_train_lm_head_on_a_tied_model_is_refused(real_meta, params):
    with pytest.raises(ParamsError, match="train_lm_head is true but this base model ties lm_head"):
        build_peft_model(real_meta, paper_job(params, train_lm_head=True), "unused", None, None)


def test_bf16_model_trains_fp32_master_weights(workspace, params):
    """Unfreeze on a bf16 model: the audio modules' trainable copies, LoRA and the token rows are
    fp32; the frozen base stays bf16; a 2e-5 step moves them where bf16 would not."""
    processor = load_processor(workspace / "base")
    model = load_base_model(workspace / "base", dtype="bfloat16")
    job = paper_job(params, config=ConfigParams(init="fresh", lora_params="lora", unfreeze_audio=True))
    model = build_peft_model(model, job, str(workspace / "base"), None, processor)
    trainable = {n: t for n, t in model.named_parameters() if t.requires_grad}
    audio = {n: t for n, t in trainable.items() if "audio_embed.encoder" in n}
    assert audio and any(".lora_" in n for n in trainable) and any("trainable_tokens" in n for n in trainable)
    assert {t.dtype for t in trainable.values()} == {torch.float32}
    assert {t.dtype for n, t in model.named_parameters() if not t.requires_grad} == {torch.bfloat16}

    # what fp32 buys: an AdamW-sized step (lr 2e-5 per element) survives in fp32, rounds away in bf16
    weights = torch.cat([t.detach().flatten() for t in audio.values() if t.dim() > 1])
    step = torch.full_like(weights, 2e-5)
    lost = ((weights.bfloat16() + step.bfloat16()) == weights.bfloat16()).float().mean().item()
    kept = ((weights + step) != weights).float().mean().item()
    assert lost > 0.5 and kept == 1.0, (lost, kept)

    # and a real step under bf16 autocast (the trainer's mixed precision) moves the audio encoder
    from pronounce.data.audio import AudioStore
    from pronounce.task.materialize import load_instances
    from pronounce.training.collator import PronunciationCollator

    store = AudioStore(workspace / "decoded" / "train.arrow")
    rows = load_instances(workspace / "materialized", "train").select(range(2)).to_list()
    batch = PronunciationCollator(processor, audio_lookup=lambda r: store[r["audio_row"]])(rows)
    before = {n: t.detach().clone() for n, t in audio.items()}
    opt = torch.optim.AdamW(list(trainable.values()), lr=2e-5)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    opt.step()
    moved = sum(not torch.equal(before[n], t) for n, t in audio.items())
    assert moved >= len(audio) // 2, f"only {moved} of {len(audio)} audio tensors moved"


def test_unfreeze_trains_the_audio_encoder_and_projector_and_nothing_else(workspace, params):
    """params.yaml's `unfreeze` (the paper's section 3.2): the LoRA it continues (the speech LoRA,
    as pretrained_r320, its weights loaded), the two task-token rows, and every weight of the
    audio encoder and of the speech projector (transformers' native names, AUDIO_MODULES), by
    name and count; the language model, the vision path and the vision-speech projector stay frozen."""
    from pronounce.training.adapters import AUDIO_MODULES

    base = workspace / "base"
    processor = load_processor(base)
    plain = load_base_model(base)
    audio = {f"{m}.{n}": p.numel() for m in AUDIO_MODULES for n, p in plain.get_submodule(m).named_parameters()}
    encoder = "model.embed_tokens_extend.audio_embed.encoder."
    assert {n.removeprefix("model.embed_tokens_extend.audio_embed.").split(".")[0] for n in audio} == {
        "encoder", "up_proj_for_speech", "down_proj_for_speech"}
    assert {n for n, _ in plain.named_parameters() if n.startswith(encoder)} <= set(audio)  # the whole encoder

    job = params.train_job("unfreeze")
    assert (job.config.init, job.config.unfreeze_audio) == ("speech-lora", True)
    model = build_peft_model(load_base_model(base), job, str(base), None, processor)
    trainable = {n.removeprefix("base_model.model."): p for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if ".lora_" in n}
    tokens = {n for n in trainable if "trainable_tokens_delta" in n}
    copies = {n.replace(".modules_to_save.default", ""): p.numel() for n, p in trainable.items()
              if n not in lora | tokens}
    assert copies == audio  # exactly the audio encoder and projector, each weight once
    assert tokens == {"model.embed_tokens.token_adapter.trainable_tokens_delta.default"}

    # its LoRA is pretrained_r320's: the same modules, starting from the same (speech LoRA) weights
    r320 = build_peft_model(load_base_model(base), params.train_job("pretrained_r320"), str(base), None, processor)
    r320_lora = {n.removeprefix("base_model.model."): p for n, p in r320.named_parameters() if ".lora_" in n}
    assert lora == set(r320_lora) and all(torch.equal(trainable[n], r320_lora[n]) for n in lora)
    assert all(n.startswith("model.layers.") for n in lora)
    n_lora = sum(trainable[n].numel() for n in lora)
    assert sum(p.numel() for p in trainable.values()) == n_lora + 2 * TINY_HIDDEN + sum(audio.values())
