"""The package's layout holds: sub-packages import only those below them, no module imports in a
circle, scoring runs without torch or model code, and each sub-package's public face resolves."""

import importlib
import subprocess
import sys

import pytest
from conftest import ROOT

from pronounce.core.code_deps import import_closure, imported_names, module_file

PACKAGE = ROOT / "src" / "pronounce"
# What each sub-package may import (the rest of the project is above it). checks/ and the
# `pronounce` command (__main__) sit on top and may import anything.
BELOW = {
    "core": set(),
    "data": {"core"},
    "task": {"core", "data"},
    "model": {"core", "data", "task"},
    "training": {"core", "data", "task", "model"},
    "evaluation": {"core", "data", "task", "model", "training"},
    "scoring": {"core", "data", "task"},
    "assess": {"core", "data", "task", "model", "training", "evaluation", "scoring"},
}
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def modules(package=PACKAGE):
    return sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def project_imports(path, package=PACKAGE):
    """The project modules `path` imports (module or function level), as files."""
    out = set()
    for name in imported_names(path, package.parent):
        found = module_file(name, package.parent)
        if found is not None and found != path:
            out.add(found)
    return out


def subpackage(path, package=PACKAGE):
    rel = path.relative_to(package).parts
    return rel[0] if len(rel) > 1 else None


def upward_imports(package=PACKAGE):
    upward = []
    for path in modules(package):
        mine = subpackage(path, package)
        if mine not in BELOW:
            continue
        for target in project_imports(path, package):
            theirs = subpackage(target, package)
            if theirs is None and target.name == "_face.py":
                continue
            if theirs != mine and theirs not in BELOW[mine]:
                upward.append(f"{path.relative_to(package)} -> {target.relative_to(package)}")
    return upward


def test_the_sub_packages_are_the_ones_the_rules_name():
    assert set(SUBPACKAGES) == set(BELOW) | {"checks"}


def test_no_sub_package_imports_one_above_it():
    assert not upward_imports(), f"imports running back up the layers: {upward_imports()}"


def test_the_layer_check_sees_an_upward_import(tmp_path):
    # The check is only as good as its reading of imports: a function-level one, relative, upward.
    import shutil

    copy = tmp_path / "pronounce"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    phones = copy / "data" / "phones.py"
    phones.write_text(phones.read_text() + "\n\ndef late():\n    from ..training.train import run_train\n")
    assert upward_imports(copy) == ["data/phones.py -> training/train.py"]


def circles(package=PACKAGE):
    graph = {p: project_imports(p, package) for p in modules(package)}
    state, found = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(" -> ".join(p.relative_to(package).as_posix() for p in stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_module_imports_in_a_circle():
    assert not circles(), f"import circles: {circles()}"


def test_the_circle_check_sees_a_circle(tmp_path):
    import shutil

    copy = tmp_path / "pronounce"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    tables = copy / "scoring" / "tables.py"
    tables.write_text(tables.read_text() + "\n\ndef late():\n    from .report import run_report\n")
    assert any("scoring/report.py -> scoring/tables.py -> scoring/report.py" in c
               or "scoring/tables.py -> scoring/report.py -> scoring/tables.py" in c for c in circles(copy))


def test_scoring_reaches_no_torch_and_no_model_code():
    closure = import_closure(*(PACKAGE / "scoring").glob("*.py"), PACKAGE / "checks" / "verify_pulled.py")
    heavy = sorted(str(p.relative_to(PACKAGE)) for p in closure if subpackage(p) in {"model", "training", "evaluation"})
    assert not heavy, f"scoring imports model code: {heavy}"
    # and at run time: re-scoring a pulled run imports no torch
    code = ("import sys, pronounce.scoring.score, pronounce.scoring.report, pronounce.checks.verify_pulled; "
            "sys.exit(3 if 'torch' in sys.modules or 'transformers' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("name", [p for p in SUBPACKAGES if p != "checks"])
def test_each_public_face_resolves_and_shadows_no_module(name):
    package = importlib.import_module(f"pronounce.{name}")
    assert package.__all__, f"pronounce.{name} names no public face"
    own_modules = {p.stem for p in (PACKAGE / name).glob("*.py")}
    assert not set(package.__all__) & own_modules, "a face name would hide the module of that name"
    for module, names in package._FACE.items():
        assert module in own_modules, f"pronounce.{name}._FACE names no module {module}"
        for attr in names:
            assert getattr(package, attr) is getattr(importlib.import_module(f"pronounce.{name}.{module}"), attr)
            assert not attr.startswith("_")
    with pytest.raises(AttributeError):
        package.no_such_name


def test_the_import_closure_follows_a_face_to_the_module_defining_the_name(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("from pronounce.data import read_corpus\n")
    closure = {p.relative_to(PACKAGE).as_posix() for p in import_closure(script)}
    assert "data/corpus.py" in closure and "data/__init__.py" in closure
    assert "data/decode.py" not in closure  # a face loads what is used, not the whole sub-package
