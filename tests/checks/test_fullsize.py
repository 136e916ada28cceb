"""The full-size Phi-4-multimodal-instruct, checked without its weights (issue 13, item 7).

The model is built from its real configuration (src/pronounce/reference/phi4_multimodal_config.json,
a copy of ../shared/reference/phi4-multimodal-instruct/config.json, so a clone needs nothing
outside the repository) on the meta device: shapes and module names only, no memory, no
download. The tokenizer here is the tiny one's byte-level BPE moved to the real special-token
ids (text 0..199998 padding, <|endoftext|> 199999, image 200010, audio 200011, <|end|> 200020),
saved beside the real config.json, and loaded through the pipeline's own load_processor.
"""

import copy
import dataclasses
import json
import math
import re

import numpy as np
import pytest
import torch
from conftest import ROOT
from peft import get_peft_model

from pronounce.checks.fullsize import real_id_tokenizer
from pronounce.core.params import load_params
from pronounce.model import loader as M
from pronounce.model import processor as MP
from pronounce.model.convert import write_adapter_config
from pronounce.task import prompts
from pronounce.training.adapters import lora_config
from pronounce.training.collator import IGNORE_INDEX, PronunciationCollator

SHARED = ROOT.parent / "shared" / "reference" / "phi4-multimodal-instruct" / "config.json"
TEXT_LORA = r"model\.layers\.\d+\.(self_attn\.(qkv|o)_proj|mlp\.(gate_up|down)_proj)"
SAME_SUFFIX = re.compile(r".*\.(qkv_proj|o_proj|gate_up_proj|down_proj)")


@pytest.fixture(scope="module")
def meta_model():
    from transformers import Phi4MultimodalForCausalLM

    with torch.device("meta"):
        return Phi4MultimodalForCausalLM(M.real_config())


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def test_vendored_config_is_the_shared_reference():
    if not SHARED.is_file():
        pytest.skip(f"{SHARED} is not here (a clone without ../shared)")
    assert json.loads(M.REAL_CONFIG.read_text()) == json.loads(SHARED.read_text())


def test_real_model_shape(meta_model):
    cfg = meta_model.config
    assert sum(p.numel() for p in meta_model.parameters()) == 4_743_988_032  # tied embeddings counted once
    assert meta_model.lm_head.weight is meta_model.model.embed_tokens.weight
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (32, 3072, 24, 8)
    assert cfg.vocab_size == 200_064 and cfg.audio_config.num_blocks == 24
    assert cfg.audio_config.audio_token_id == 200011 and cfg.vision_config.image_token_id == 200010


@pytest.mark.parametrize("pattern", ["params", "speech-lora"])
def test_lora_regex_matches_the_128_decoder_projections_only(meta_model, params, pattern):
    regex = params.lora.target_modules if pattern == "params" else M.SPEECH_LORA_TARGETS
    linear = {n for n, m in meta_model.named_modules() if isinstance(m, torch.nn.Linear)}
    matched = {n for n, _ in meta_model.named_modules() if re.fullmatch(regex, n)}
    assert len(matched) == 128 and matched <= linear
    assert {n.split(".")[2] for n in matched} == {str(i) for i in range(32)}  # 4 in each of 32 layers
    assert matched == {n for n in linear if re.fullmatch(TEXT_LORA, n)}
    # The audio encoder's 120 Linear layers of the same names stay out.
    lookalikes = {n for n in linear if n.startswith("model.embed_tokens_extend.audio_embed") and SAME_SUFFIX.fullmatch(n)}
    assert len(lookalikes) == 120 and not lookalikes & matched


def _lora_parameters(meta_model, peft_cfg) -> int:
    with torch.device("meta"):  # the new adapter weights too: nothing is allocated
        model = get_peft_model(copy.deepcopy(meta_model), peft_cfg)
    lora = {n for n, p in model.named_parameters() if p.requires_grad and ".lora_" in n}
    assert len(lora) == 2 * 128 and not any("audio_embed" in n for n in lora)
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if n in lora)  # LoRA only
    return trainable


def paper_job(params, name):
    """Config `name` trained under the paper's recipe."""
    return dataclasses.replace(params.train_job(name), recipe=params.train.recipes["paper"])


def test_trainable_parameters_of_every_config(meta_model, params, tmp_path):
    cfg, pretrained = lora_config(paper_job(params, "paper_r64"), "unused", None)
    assert pretrained is None and cfg.r == 64
    assert _lora_parameters(meta_model, cfg) == 92_274_688
    # pretrained_r320 starts from the speech-lora the base stage writes (here its config as the
    # conversion writes it from the real main config's speech_lora section; no weights needed).
    main = json.loads((ROOT / "tests" / "assets" / "phi4mm_main_config.json").read_text())["speech_lora"]
    folder = tmp_path / "base" / M.SPEECH_LORA_DIR
    folder.mkdir(parents=True)
    write_adapter_config(folder, main["r"], main["lora_alpha"], main["dp"])
    (folder / "adapter_model.safetensors").write_bytes(b"")  # present; lora_config reads only the config
    cfg, pretrained = lora_config(paper_job(params, "pretrained_r320"), str(tmp_path / "base"), None)
    assert pretrained == folder and (cfg.r, cfg.lora_alpha) == (320, 640)
    assert _lora_parameters(meta_model, cfg) == 461_373_440
    # unfreeze: the same speech LoRA plus the audio encoder (441,238,144) and the speech projector
    # (3,148,800 + 9,440,256) trained as modules_to_save; the vision-speech projector stays frozen
    cfg, pretrained = lora_config(paper_job(params, "unfreeze"), str(tmp_path / "base"), None)
    assert pretrained == folder and cfg.r == 320
    with torch.device("meta"):
        model = get_peft_model(copy.deepcopy(meta_model), cfg)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    audio = {n: k for n, k in trainable.items() if ".lora_" not in n}
    assert all(".modules_to_save.default." in n and "vision" not in n for n in audio)
    assert sum(audio.values()) == 453_827_200 and sum(trainable.values()) == 461_373_440 + 453_827_200


@pytest.fixture(scope="module")
def real_processor(tmp_path_factory):
    """load_processor on a folder with the real config.json and a tokenizer at the real ids; like the
    checkpoint on main, its tokenizer config names no audio token: the loader derives it (200011)."""
    from transformers import Phi4MultimodalFeatureExtractor

    folder = tmp_path_factory.mktemp("real-ids")
    (folder / "config.json").write_text(M.REAL_CONFIG.read_text())
    real_id_tokenizer().save_pretrained(folder)
    Phi4MultimodalFeatureExtractor().save_pretrained(folder)
    return MP.load_processor(folder)


def test_a_20_second_clip_is_250_audio_tokens(real_processor):
    fe = real_processor.audio_processor
    assert (fe.feature_size, fe.sampling_rate, fe.hop_length, fe.win_length, fe.n_fft) == (80, 16000, 160, 400, 512)
    assert fe.audio_compression_rate == M.real_config().audio_config.time_reduction == 8
    clip = np.random.default_rng(0).standard_normal(20 * 16000).astype(np.float32) * 0.1
    out = fe(clip, sampling_rate=16000, return_tensors="pt")
    frames = (len(clip) - 400) // 160 + 1
    assert out["audio_input_features"].shape == (1, frames, 80)
    assert out["audio_embed_sizes"].tolist() == [math.ceil(frames / 8)] == [250]


def test_collator_labels_are_the_answer_and_end_with_real_ids(real_processor):
    tok = real_processor.tokenizer
    assert real_processor.audio_token == "<|endoftext11|>" and real_processor.audio_token_id == 200011
    control = tok.convert_tokens_to_ids([prompts.APA_TOKEN, prompts.MDD_TOKEN])
    assert all(200022 < i < 200064 for i in control)  # new ids inside the padded embedding: no resize
    rng = np.random.default_rng(1)
    answers = ['{"accuracy": 8, "fluency": 9, "prosodic": 9, "total": 8}',
               '{"word_transcript": "WE CALL IT BEAR", "phoneme_transcript": "W IY K AO L IH T B EH R"}']
    rows = [{"prompt": prompts.user_turn(task, real_processor.audio_token), "answer": answer,
             "audio": rng.standard_normal(seconds * 16000).astype(np.float32) * 0.1}
            for task, answer, seconds in zip(prompts.TASKS, answers, (20, 3))]
    batch = PronunciationCollator(real_processor)(rows)
    ids, labels = batch["input_ids"], batch["labels"]
    assert (ids[0] == 200011).sum() == 250 and batch["audio_embed_sizes"].tolist()[0] == 250
    for i, answer in enumerate(answers):
        kept = labels[i][labels[i] != IGNORE_INDEX].tolist()
        assert kept == tok(answer + prompts.END, add_special_tokens=False)["input_ids"]
        assert kept[-1] == 200020 and tok.decode(kept) == answer + prompts.END
        # Everything before the answer is the prompt, masked: audio, user/assistant tags, control token.
        start = int((labels[i] != IGNORE_INDEX).nonzero()[0])
        assert ids[i, start - 1] == 200019 and ids[i, 0] == 200021 and ids[i, 1] == control[i]
    assert (ids[1][batch["attention_mask"][1] == 0] == 199999).all()  # padded with <|endoftext|>, masked


# --------------------------------------------------------------------------- the command (pronounce.checks.fullsize)

def test_each_config_is_built_from_its_own_config_and_generates_with_its_cache(tmp_path):
    """The stand-in builder gives each config's model its own copy of the configuration: the
    trainer of the first sets use_cache False on its model's config (transformers' Trainer, on
    every model it gets), and a second model built from that same object would generate without
    its key/value cache, a prefill per new token. Here (the tiny model's configuration, for speed)
    the second model still decodes one new token per step against a cache that grows by one."""
    from transformers import Trainer, TrainingArguments

    from pronounce.checks.fullsize import standin_builder
    from pronounce.model.tiny import build_tiny_tokenizer, tiny_config

    seconds = []
    build = standin_builder(tiny_config(build_tiny_tokenizer()), 0, "sdpa", "fp32", seconds)
    first = build(None, None)
    Trainer(model=first, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]))
    assert first.config.use_cache is False  # what the trainer did to the first config's model
    second = build(None, None)
    assert second.config.use_cache is True and second.generation_config.use_cache is True
    assert len(seconds) == 2

    steps = []  # per forward: (input width, cache length before it)
    second.register_forward_pre_hook(lambda m, a, kw: steps.append(
        (kw["input_ids"].shape[1], kw["cache"].get_seq_length() if kw.get("cache") is not None else None)),
        with_kwargs=True)
    prompt = torch.tensor([[5, 6, 7, 8, 9, 10]])
    second.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5, min_new_tokens=5,
                    do_sample=False, pad_token_id=0)
    assert steps == [(6, 0), (1, 6), (1, 7), (1, 8), (1, 9)]


def check_fullsize_report(report, configs, batch, new_tokens, layers, weight_bytes=2):
    from transformers import Phi4MultimodalForCausalLM

    from pronounce.checks.fullsize import fullsize_config

    with torch.device("meta"):
        base_params = sum(p.numel() for p in Phi4MultimodalForCausalLM(fullsize_config(layers)).parameters())
    assert report["profile"] == "paper" and report["checks"]["layout"] == "phi4_multimodal"
    assert report["checks"]["audio_token_id"] == 200011
    assert report["projected_for"]["train_utterances"] == report["projected_for"]["test_utterances"] == 2500
    assert len(report["build_seconds"]) == len(configs)
    for name in configs:
        x = report["configs"][name]
        assert x["lora_modules"] == 4 * (layers or 32)
        assert x["lora_r"] == {"paper_r64": 64, "pretrained_r320": 320, "unfreeze": 320}[name]
        assert (x["audio_params"] > 0) == (name == "unfreeze")
        rows, width, tokens = x["step_shapes"][0]
        assert rows == batch and width > 250  # the longest clips' audio placeholders alone are over 250
        assert x["forward_seconds"] > 0 and x["backward_seconds"] > 0 and x["optimizer_seconds"] >= 0
        assert x["gen_batch"] == batch and x["gen_new_tokens"] == new_tokens
        # built in bf16 (2 bytes a weight, never an fp32 copy; 4 for fp32); the trainable weights fp32 master copies
        assert x["weights_bytes"] == weight_bytes * base_params + 4 * x["trainable_params"]
        assert x["projected"]["checkpoints_evaluated"] == 4  # the paper profile evaluates every epoch
    # 2,500 test utterances x 2 tasks x (the base model + 4 epochs of each config)
    assert report["projected"]["generations"] == 5000 * (1 + 4 * len(configs))
    assert 0 < report["projected"]["eval_share_expected"] < 1


@pytest.mark.slow  # a minute each on 2 cores: the full 200,064-row vocabulary in training and generation
@pytest.mark.parametrize("precision", ["bf16-any", "fp32"])
def test_the_command_runs_the_reduced_real_architecture(params, precision):
    """python -m pronounce.checks.fullsize end to end at full width and vocabulary, 1 layer deep: bf16 (the
    real run's weights; on a CPU without bf16 matrix kernels, such as this project's AVX2 machines,
    their products run in float32 through pronounce.checks.cpu_bf16, and the report says so) and fp32."""
    from pronounce.checks.cpu_bf16 import has_bf16_matmul_kernels
    from pronounce.checks.fullsize import run_fullsize

    report = run_fullsize(params, layers=1, batch_size=1, new_tokens=2, configs=["paper_r64"], log=lambda m: None,
                          precision=precision)
    check_fullsize_report(report, ["paper_r64"], 1, 2, 1, weight_bytes=2 if precision == "bf16-any" else 4)
    assert report["configs"]["paper_r64"]["trainable_params"] == 64 * (3072 + 5120 + 3072 + 3072 + 3072 + 16384 +
                                                                      8192 + 3072) + 2 * 3072  # + the 2 token rows
    emulated = precision == "bf16-any" and not torch.cuda.is_available() and not has_bf16_matmul_kernels()
    assert ("matmul" in report) == emulated


@pytest.mark.fullsize
def test_the_command_at_full_size(params):
    """Every config at the real size on the two longest clips (~23 GiB of memory; about half an hour
    for two configs on this project's 2-core AVX2 CPU, docs/real-run.md, "The full-size check")."""
    from pronounce.checks.fullsize import run_fullsize

    # On a 24 GiB CPU machine unfreeze does not fit beside the rest: its audio modules' fp32 copy,
    # gradient and AdamW states add 6.8 GiB (453.8 M weights x 16 bytes) to pretrained_r320's 22.9.
    configs = ["paper_r64", "pretrained_r320"] + (["unfreeze"] if torch.cuda.is_available() else [])
    report = run_fullsize(params, batch_size=2, new_tokens=4, configs=configs, log=lambda m: None)
    check_fullsize_report(report, configs, 2, 4, None)
    assert report["configs"]["paper_r64"]["lora_params"] == 92_274_688
    assert report["configs"]["pretrained_r320"]["lora_params"] == 461_373_440
    if "unfreeze" in configs:
        assert report["configs"]["unfreeze"]["lora_params"] == 461_373_440
        assert report["configs"]["unfreeze"]["audio_params"] == 453_827_200
