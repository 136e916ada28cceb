"""dvc.yaml cannot go stale: every project module a stage's script imports (transitively, at module
or function level; pronounce.core.code_deps derives it) is listed in that stage's deps, so editing it reruns the stage."""

import yaml
from conftest import ROOT

from pronounce.core.code_deps import import_closure, module_file

SRC = ROOT / "src"


def stage_scripts_and_deps():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        scripts = [ROOT / w for w in body["cmd"].split() if w.endswith(".py")]
        deps = [d for d in body.get("deps", []) if isinstance(d, str)]
        yield name, scripts, deps


def test_every_stage_lists_the_project_modules_its_script_imports():
    stale = {}
    for name, scripts, deps in stage_scripts_and_deps():
        assert scripts, f"stage {name}: no python script in its cmd"
        for script in scripts:
            assert script.relative_to(ROOT).as_posix() in deps, f"stage {name}: its script is not a dep"
            for module in import_closure(script):
                rel = module.relative_to(ROOT).as_posix()
                if not any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps):
                    stale.setdefault(name, []).append(rel)
    assert not stale, f"dvc.yaml deps miss modules their stage imports (an edit would not rerun it): {stale}"


def test_the_closure_follows_function_level_and_relative_imports(tmp_path):
    # score imports metrics at module level; metrics imports phones: both must be in the closure.
    closure = {p.name for p in import_closure(SRC / "pronounce" / "scoring" / "metrics.py")}
    assert "phones.py" in closure
    assert module_file("pronounce.no_such_module") is None
