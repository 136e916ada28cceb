"""dvc.yaml cannot go stale: every project module a stage's script imports (transitively, at module
or function level) is listed in that stage's deps, so editing it reruns the stage."""

import ast
from pathlib import Path

import yaml
from conftest import ROOT

SRC = ROOT / "src"


def module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path):
    """Every module name an import statement in `path` may refer to (relative imports resolved)."""
    package = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1]) if path.is_relative_to(SRC) else ""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(parts + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)  # `from . import x`


def import_closure(script: Path) -> set[Path]:
    """The project modules `script` may run. A package __init__.py that imports nothing (ours
    holds a docstring and __version__) runs no code a stage depends on and is left out."""
    seen, todo = set(), [script]
    while todo:
        for name in imported_names(todo.pop()):
            found = module_file(name)
            if found and found not in seen:
                seen.add(found)
                todo.append(found)
    return {f for f in seen if f.name != "__init__.py" or any(imported_names(f))}


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
    closure = {p.name for p in import_closure(SRC / "pronounce" / "metrics.py")}
    assert "phones.py" in closure
    assert module_file("pronounce.no_such_module") is None
