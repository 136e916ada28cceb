"""The params reference is generated from the typed params: every key has help text, and the page
names every key of params.yaml with its value there."""

from dataclasses import dataclass, field

import yaml
from conftest import ROOT

from pronounce.core.params_doc import reference, undocumented


def leaf_keys(raw, prefix="", mapping_sections=("configs", "train.recipes")):
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if path in mapping_sections:
            for entry in value.values():
                yield from leaf_keys(entry, f"{path}.<name>.", mapping_sections)
        elif isinstance(value, dict) and path not in ("eval.epochs", "score.min_parse_rate"):
            yield from leaf_keys(value, f"{path}.", mapping_sections)
        else:
            yield path


def test_every_key_of_the_schema_has_help():
    assert undocumented() == []


def test_the_check_sees_a_key_without_help():
    @dataclass(frozen=True)
    class Section:
        documented: int = field(metadata={"help": "says what it does"})
        bare: int = field()

    assert undocumented(Section) == ["bare"]


def test_the_reference_names_every_key_of_params_yaml_with_its_value():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    page = reference(ROOT / "params.yaml")
    keys = set(leaf_keys(raw))
    assert len(keys) > 40
    missing = [k for k in keys if f"`{k}`" not in page]
    assert not missing, f"keys of params.yaml missing from the reference: {missing}"
    assert "| `seed` | int | >= 0 | `1234` |" in page
    assert "`paper_r64`" in page and "`smoke`" in page  # a value column per config and per recipe


def test_the_reference_follows_params_yaml(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["seed"] = 77
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert "| `seed` | int | >= 0 | `77` |" in reference(tmp_path / "params.yaml")
