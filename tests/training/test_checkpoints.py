"""Finding a config's adapters: the final one and the epochs `eval.epochs` selects, byte-identical
ones linked, a missing adapter file named."""

import pytest

from pronounce.core.errors import ParamsError
from pronounce.training.checkpoints import (
    ADAPTER_FILES,
    EvalError,
    adapter_digest,
    find_checkpoints,
    parse_epochs,
    select_epochs,
)


def adapter(folder, weights: bytes):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_adapter_files_are_what_peft_saves():
    assert ADAPTER_FILES == ("adapter_config.json", "adapter_model.safetensors")


def test_select_epochs():
    assert select_epochs("all", [3, 1, 2]) == [1, 2, 3]
    assert select_epochs("none", [1, 2]) == []
    assert select_epochs("last:2", [1, 2, 3]) == [2, 3]
    assert select_epochs("last:5", [1, 2]) == [1, 2]
    assert select_epochs([2, 1, 2], [1, 2, 3]) == [1, 2]
    with pytest.raises(EvalError, match=r"epoch\(s\) \[4\]"):
        select_epochs([4], [1, 2, 3])
    for bad in ("some", "last:0", "last:x", 3):
        with pytest.raises(ParamsError, match=r"eval.epochs must be all, none, last:<n> \(n >= 1\)"):
            parse_epochs(bad)
    for bad in ([0], [True]):
        with pytest.raises(ParamsError, match=r"eval.epochs as a list must hold epoch numbers >= 1"):
            parse_epochs(bad)


def test_final_adapter_identical_to_the_last_epoch_is_linked_to_it(tmp_path):
    adapter(tmp_path / "adapter", b"w2")
    adapter(tmp_path / "epoch-1", b"w1")
    adapter(tmp_path / "epoch-2", b"w2")
    (tmp_path / "epoch-x").mkdir()  # not an epoch folder: ignored
    found = find_checkpoints(tmp_path, "all")
    assert [(c.name, c.epoch, c.folder.name, c.same_as) for c in found] == [
        ("final", 2, "adapter", None), ("epoch-1", 1, "epoch-1", None), ("epoch-2", 2, "epoch-2", "final")]
    assert found[0].digest == found[2].digest == adapter_digest(tmp_path / "epoch-2") != found[1].digest
    assert [c.name for c in find_checkpoints(tmp_path, "last:1")] == ["final", "epoch-2"]


def test_final_adapter_unlike_the_last_epoch_has_no_epoch(tmp_path):
    adapter(tmp_path / "adapter", b"other")
    adapter(tmp_path / "epoch-1", b"w1")
    found = find_checkpoints(tmp_path, "none")
    assert [(c.name, c.epoch, c.same_as) for c in found] == [("final", None, None)]


def test_missing_adapter_is_a_clear_error(tmp_path):
    (tmp_path / "empty" / "adapter").mkdir(parents=True)
    with pytest.raises(EvalError, match="missing adapter_config.json, adapter_model.safetensors: run the train stage"):
        find_checkpoints(tmp_path / "empty", "all")
    adapter(tmp_path / "half" / "adapter", b"w")
    (tmp_path / "half" / "adapter" / "adapter_config.json").unlink()
    with pytest.raises(EvalError, match=r"half/adapter is missing adapter_config.json: run the train stage first"):
        adapter_digest(tmp_path / "half" / "adapter")
