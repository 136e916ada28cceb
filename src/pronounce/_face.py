"""The public face of a sub-package, loaded on first use.

Each sub-package's __init__.py names what it offers in `_FACE` ({module: [names]}) and gets
`__all__` and a module `__getattr__` from `lazy`: `from pronounce.data import read_corpus` works,
but importing `pronounce.data.phones` does not import the rest of `pronounce.data`. That keeps
each stage's code (and so its dvc.yaml deps and the evaluation cache key, both derived from the
import closure by pronounce.core.code_deps, which reads `_FACE` too) to the modules it runs, and
keeps torch out of re-scoring.
"""

from importlib import import_module


def lazy(package: str, face: dict[str, list[str]]):
    """(__all__, __getattr__, __dir__) for the package named `package` offering `face`."""
    where = {name: module for module, names in face.items() for name in names}

    def __getattr__(name):
        if name in where:
            return getattr(import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(where)

    return sorted(where), __getattr__, __dir__
