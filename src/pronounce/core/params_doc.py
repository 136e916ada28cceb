"""The params reference, generated from the typed params (pronounce.core.params): every key of
params.yaml with its type, its allowed values, its value in params.yaml and its help text, so the
docs, the code and params.yaml cannot disagree. `python -m pronounce.core.params_doc > docs/reference/params.md`
writes the page; tests/test_docs.py fails when it is stale.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

import yaml

from .params import Params

INTRO = """# Params reference

Every tunable value of the pipeline lives in `params.yaml`, one section per stage, and is checked
against these types and ranges when a stage starts: an unknown key, a missing key, a wrong type or
an out-of-range value is a one-line error naming the key. Override any of them for one run with
`dvc exp run -S key=value`. This page is generated from the code (`pronounce.core.params`), the
values from `params.yaml`.
"""


def _type(annotation) -> str:
    if is_dataclass(annotation):
        return "section"
    if get_origin(annotation) is Mapping:
        return "names you choose"
    args = get_args(annotation)
    names = [getattr(a, "__name__", str(a)) for a in (args or (annotation,))]
    return " or ".join("null" if n == "NoneType" else n for n in names)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(value) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict):
        return "<br>".join(f"{k}: `{v}`" for k, v in value.items())
    return f"`{value}`"


def _header(columns) -> list[str]:
    return ["| key | type | must be | " + " | ".join(columns) + " | what it does |",
            "|---|---|---|" + "---|" * len(columns) + "---|"]


def _row(key: str, f, annotation, cells) -> str:
    check = (f.metadata.get("check") or (None, ""))[1]
    return (f"| `{key}` | {_type(annotation)} | {_cell(check) or 'any'} | "
            + " | ".join(_cell(_value(c)) for c in cells) + f" | {_cell(f.metadata.get('help', ''))} |")


def _table(cls, columns: dict[str, dict], prefix: str) -> list[str]:
    """A row a leaf key of section `cls`, a value column per entry of `columns` ({heading: the
    section's values}); nested sections get their own table after it."""
    hints = get_type_hints(cls)
    rows, nested = _header(columns), []
    for f in fields(cls):
        annotation = hints[f.name]
        if is_dataclass(annotation) or get_origin(annotation) is Mapping:
            nested.append((f, annotation))
        else:
            rows.append(_row(f"{prefix}{f.name}", f, annotation, [v.get(f.name) for v in columns.values()]))
    out = rows if len(rows) > 2 else []
    for f, annotation in nested:
        sub = {k: v.get(f.name) or {} for k, v in columns.items()}
        out += ["", *_section(f"{prefix}{f.name}", f.metadata.get("help", ""), annotation, sub)]
    return out


def _section(key: str, help_: str, annotation, columns: dict[str, dict]) -> list[str]:
    out = [f"## `{key}`" if key.count(".") == 0 else f"### `{key}`", "", help_, ""]
    if get_origin(annotation) is Mapping:  # names the user chooses: a value column per name
        values = next(iter(columns.values()))
        out += [f"Each entry under `{key}` is a name you choose, holding these keys "
                f"(params.yaml has {', '.join(f'`{n}`' for n in values) or 'none'}):", ""]
        return out + _table(get_args(annotation)[1], {f"`{n}`": v for n, v in values.items()}, f"{key}.<name>.")
    return out + _table(annotation, columns, f"{key}.")


def reference(params_path="params.yaml") -> str:
    """The reference page (markdown) for the params file at `params_path`."""
    raw = yaml.safe_load(Path(params_path).read_text(encoding="utf-8")) or {}
    hints = get_type_hints(Params)
    top, sections = _header(["in params.yaml"]), []
    for f in fields(Params):
        annotation, help_ = hints[f.name], f.metadata.get("help", "")
        if is_dataclass(annotation) or get_origin(annotation) is Mapping:
            sections += ["", *_section(f.name, help_, annotation, {"in params.yaml": raw.get(f.name) or {}})]
        else:
            top.append(_row(f.name, f, annotation, [raw.get(f.name)]))
    return "\n".join([INTRO, "## Top level", "", *top, *sections]) + "\n"


def undocumented(root=Params) -> list[str]:
    """Keys of the params schema without help text (a test keeps this empty)."""
    missing, todo = [], [("", root)]
    while todo:
        prefix, cls = todo.pop()
        hints = get_type_hints(cls)
        for f in fields(cls):
            if not f.metadata.get("help"):
                missing.append(prefix + f.name)
            annotation = hints[f.name]
            if is_dataclass(annotation):
                todo.append((f"{prefix}{f.name}.", annotation))
            elif get_origin(annotation) is Mapping:
                todo.append((f"{prefix}{f.name}.<name>.", get_args(annotation)[1]))
    return missing


if __name__ == "__main__":
    sys.stdout.write(reference(sys.argv[1] if len(sys.argv) > 1 else "params.yaml"))
