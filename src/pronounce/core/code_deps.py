"""Which project modules a piece of code may run: the import closure, read from the source.

One derivation for two users: tests/core/test_dvc_deps.py (every module a stage's script imports is
in its dvc.yaml deps) and the evaluation cache (pronounce.evaluation.generation keys a generation on the
source of every module generating depends on). Imports are read with `ast`, at module and
function level, relative ones resolved; nothing is imported.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]  # the folder holding the `pronounce` package


def module_file(name: str, src: Path = SRC) -> Path | None:
    """The file of module `name` under `src` (a package's __init__.py), or None if not there."""
    path = src.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path, src: Path = SRC):
    """Every module name an import statement in `path` may refer to (relative imports resolved)."""
    package = ".".join(path.relative_to(src).with_suffix("").parts[:-1]) if path.is_relative_to(src) else ""
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
            face = _face(module_file(module, src)) if module.startswith("pronounce") else {}
            for alias in node.names:  # `from . import x`, or a name of a sub-package's face
                yield f"{module}.{face.get(alias.name, alias.name)}"


def _face(init: Path | None) -> dict[str, str]:
    """{name: module} of a sub-package's public face, read from the `_FACE` literal of its
    __init__.py (pronounce._face): `from pronounce.data import read_corpus` runs data/corpus.py."""
    if init is None or init.name != "__init__.py":
        return {}
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_FACE" for t in node.targets):
            return {name: module for module, names in ast.literal_eval(node.value).items() for name in names}
    return {}


def _packages(module: Path, src: Path) -> list[Path]:
    """The __init__.py of every package above `module` under `src`: importing a module runs them."""
    out, folder = [], module.parent
    while folder != src and folder.is_relative_to(src):
        if (folder / "__init__.py").is_file():
            out.append(folder / "__init__.py")
        folder = folder.parent
    return out


def import_closure(*scripts: Path, src: Path = SRC) -> set[Path]:
    """The project modules `scripts` may run (not the scripts themselves, unless one imports
    another), with the __init__.py of each package they sit in (a sub-package's public face
    imports its modules). An __init__.py that imports nothing (the top package's holds a
    docstring and __version__) runs no code anyone depends on and is left out."""
    seen, todo = set(), list(scripts)
    while todo:
        for name in imported_names(todo.pop(), src):
            found = module_file(name, src)
            for f in ([found, *_packages(found, src)] if found else []):
                if f not in seen:
                    seen.add(f)
                    todo.append(f)
    return {f for f in seen if f.name != "__init__.py" or any(imported_names(f, src))}


def source_digest(modules: list[str], src: Path = SRC) -> tuple[str, list[str]]:
    """(sha256 of the source of `modules` and of every project module they import, those files'
    paths relative to `src`): what changes when any code they may run changes."""
    roots = [module_file(m, src) for m in modules]
    missing = [m for m, f in zip(modules, roots) if f is None]
    if missing:
        raise FileNotFoundError(f"no module {', '.join(missing)} under {src}")
    files = sorted(set(roots) | import_closure(*roots, src=src))
    h = hashlib.sha256()
    names = []
    for f in files:
        name = f.relative_to(src).as_posix()
        names.append(name)
        h.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest(), names
