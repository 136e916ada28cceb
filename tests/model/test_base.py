"""Stage `base` (pronounce.model.base): a Hub id pinned to the commit it resolved to, a local main-layout
copy converted into models/base, a native folder referenced, a bad folder refused.

No Hub here: the two Hub calls of our code (`base.resolve_commit`'s HfApi().model_info and
`model.hub_config`'s config download) are monkeypatched, and loading "from the Hub" is
redirected to a local tiny folder, recording the revision our code asked for."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_convert import build_native, to_main_layout

from pronounce.core.cli import run_stage
from pronounce.core.errors import ParamsError
from pronounce.model import base as B
from pronounce.model import loader as M
from pronounce.model import manifest as BM

HUB_ID = "microsoft/Phi-4-multimodal-instruct"
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> Path:
    return build_native(tmp_path_factory.mktemp("native") / "tiny", tied=True)


@pytest.fixture
def empty_cache(monkeypatch, tmp_path):
    """An empty Hugging Face cache, online: every revision but a commit goes to the Hub."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_hub(monkeypatch, native, empty_cache):
    """The Hub as our code sees it: revisions resolve to SHA, config.json and weights come from
    `native` (or a phi4mm config when `hub.layout` is "main"). Records every call."""
    import huggingface_hub
    from transformers import Phi4MultimodalForCausalLM

    hub = SimpleNamespace(layout="native", info_calls=[], config_calls=[], load_calls=[])

    def model_info(self, repo_id, revision=None, **kw):
        hub.info_calls.append((repo_id, revision))
        return SimpleNamespace(sha=SHA)

    def hub_config(repo_id, revision):
        hub.config_calls.append((repo_id, revision))
        config = json.loads((native / "config.json").read_text())
        return {**config, "model_type": "phi4mm"} if hub.layout == "main" else config

    real = Phi4MultimodalForCausalLM.from_pretrained.__func__

    def from_pretrained(cls, source, *args, revision=None, **kw):
        hub.load_calls.append((source, revision, kw.get("attn_implementation")))
        return real(cls, str(native) if source == HUB_ID else source, *args, **kw)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(M, "hub_config", hub_config)
    monkeypatch.setattr(B, "hub_config", hub_config)
    monkeypatch.setattr(Phi4MultimodalForCausalLM, "from_pretrained", classmethod(from_pretrained))
    return hub


def test_hub_id_is_pinned_to_the_commit_its_revision_resolved_to(tmp_path, fake_hub):
    manifest = B.run_base(HUB_ID, None, 0, tmp_path / "base", attn_implementation="eager")
    # null revision = the known native branch; the commit it pointed at is recorded.
    assert fake_hub.info_calls == [(HUB_ID, "refs/pr/70")]
    assert manifest == {"base": HUB_ID, "revision": "refs/pr/70", "commit": SHA, "source": HUB_ID,
                        "attn_implementation": "eager"}
    assert json.loads((tmp_path / "base" / BM.MANIFEST).read_text()) == manifest
    assert fake_hub.config_calls == [(HUB_ID, SHA)]  # the layout checked at that very commit
    # Later stages load the commit, not the moving branch, with the recorded attention.
    assert BM.resolve_base(tmp_path / "base") == (HUB_ID, SHA)
    model = BM.load_base(tmp_path / "base")
    assert fake_hub.load_calls == [(HUB_ID, SHA, "eager")]
    assert model.config._attn_implementation == "eager"
    # An explicit revision wins over the default.
    B.run_base(HUB_ID, "abc1234", 0, tmp_path / "other")
    assert fake_hub.info_calls[-1] == (HUB_ID, "abc1234")


def test_hub_revision_in_the_remote_code_layout_is_refused_with_the_fix(tmp_path, fake_hub):
    fake_hub.layout = "main"
    with pytest.raises(M.LayoutError, match=rf"{HUB_ID} at revision main \({SHA}\): .*phi4mm.*refs/pr/70"):
        B.run_base(HUB_ID, "main", 0, tmp_path / "base")
    assert not (tmp_path / "base").exists()  # nothing a later stage could take for a result
    # The loader refuses it too, before any weight is read.
    with pytest.raises(M.LayoutError, match="refs/pr/70"):
        M.load_base_model(HUB_ID, revision="main")
    assert fake_hub.load_calls == []


def test_loader_defaults_a_known_hub_id_to_its_native_revision(fake_hub):
    M.load_base_model(HUB_ID)
    assert fake_hub.info_calls == [(HUB_ID, "refs/pr/70")]  # resolved once, then loaded at the commit
    assert fake_hub.config_calls == [(HUB_ID, SHA)]
    assert fake_hub.load_calls == [(HUB_ID, SHA, "sdpa")]
    assert M.default_revision("someone/else", None) is None  # unknown ids keep their default branch
    assert M.default_revision(HUB_ID, "main") == "main"


def test_resolve_commit_asks_the_hub(monkeypatch, empty_cache):
    import huggingface_hub

    from pronounce.core.hub import HubError

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info",
                        lambda self, repo_id, revision=None, **kw: SimpleNamespace(sha=f"{repo_id}@{revision}"))
    assert B.resolve_commit("a/b", "refs/pr/70") == "a/b@refs/pr/70"
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, *a, **kw: SimpleNamespace(sha=None))
    with pytest.raises(HubError, match="no commit for a/b at revision main"):
        B.resolve_commit("a/b", None)


def test_local_main_layout_is_converted_into_the_stage_output(tmp_path, native):
    main = to_main_layout(native, tmp_path / "download")
    manifest = B.run_base(str(main), None, 0, tmp_path / "base")
    out = tmp_path / "base"
    assert manifest["source"] == "." and manifest["conversion"]["converted_from"] == "phi4mm"
    assert manifest["conversion"]["dropped"] == {"tied_lm_head": 0, "vision_lora": 16}
    assert json.loads((out / "config.json").read_text())["model_type"] == "phi4_multimodal"
    assert BM.resolve_base(out) == (str(out), None)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        converted = BM.load_base(out).eval()(input_ids=ids).logits
        original = M.load_base_model(native).eval()(input_ids=ids).logits
    assert torch.equal(converted, original)
    assert M.speech_lora_path(out) == out / "speech-lora"


def test_local_native_folder_is_referenced(tmp_path, native):
    manifest = B.run_base(str(native), None, 0, tmp_path / "base")
    assert manifest == {"base": str(native), "revision": None, "source": str(native), "attn_implementation": "sdpa"}
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == [BM.MANIFEST]
    assert BM.resolve_base(tmp_path / "base") == (str(native), None)


def test_a_folder_of_another_model_is_a_params_error(tmp_path, capsys):
    other = tmp_path / "llama"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (other / "model.safetensors").write_bytes(b"")
    with pytest.raises(ParamsError, match=r"model\.base: .*model_type 'llama'; expected 'phi4_multimodal'"):
        B.run_base(str(other), None, 0, tmp_path / "base")
    # A stage prints a layout error as one line, not a traceback.
    with pytest.raises(SystemExit, match="^2$") as exit_info:
        run_stage(M.check_native_layout, {"model_type": "phi4mm"})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: the checkpoint is Phi-4-multimodal's remote-code layout")


# ----------------------------------------------- builtin:tiny: the same bytes on any CPU

BUILD_AND_REPORT = """
import sys, torch
from pronounce.model.base import run_base
run_base("builtin:tiny", None, 1234, sys.argv[1])
print(torch.backends.cpu.get_cpu_capability().lower(), torch.get_num_threads())
"""


def best_cpu_capability() -> str:
    """What torch picked for this CPU (avx512, avx2, ...): its own switch, ATEN_CPU_CAPABILITY,
    takes the same names, and `default` runs the plain C++ kernels another CPU would."""
    return torch.backends.cpu.get_cpu_capability().lower()


def build_in_subprocess(out: Path, threads: int, capability: str) -> Path:
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "ATEN_CPU_CAPABILITY": capability}
    if capability == "default":  # MKL's matrix products too (ATEN_CPU_CAPABILITY does not reach them)
        env["MKL_CBWR"] = "COMPATIBLE"
    run = subprocess.run([sys.executable, "-c", BUILD_AND_REPORT, str(out)], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    # The switches took effect (torch ignores a capability the CPU lacks): else the test tests nothing.
    assert run.stdout.split()[-2:] == [capability, str(threads)], run.stdout
    return out


@pytest.mark.slow  # three builds in fresh processes: ~30 s of CPU
def test_tiny_base_is_the_same_bytes_at_any_thread_count_and_cpu_capability(tmp_path):
    """Issue 18: the committed dvc.lock's `base` hash must be what any machine builds. Thread
    counts change the order of a reduction's sums; ATEN_CPU_CAPABILITY=default runs the kernels
    of a CPU without AVX, which round differently (random draws, reductions): both once moved
    model.safetensors (tiny.calibrate_audio, transformers' initialisation, the speech LoRA)."""
    best = best_cpu_capability()
    builds = {(threads, cap): build_in_subprocess(tmp_path / f"{threads}-{cap}", threads, cap)
              for threads, cap in ((1, best), (2, best), (2, "default"))}
    files = {key: {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
             for key, folder in builds.items()}
    reference = files[(1, best)]
    assert {"model.safetensors", "tokenizer.json", "speech-lora/adapter_model.safetensors"} <= set(reference)
    for key, built in files.items():
        assert sorted(built) == sorted(reference), key
        moved = [name for name in reference if built[name] != reference[name]]
        assert not moved, f"built under OMP_NUM_THREADS={key[0]}, ATEN_CPU_CAPABILITY={key[1]}: {moved} differ"
