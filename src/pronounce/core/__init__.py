"""The ground every stage stands on: typed params, user errors, atomic artifacts, stage set-up.

- params       params.yaml as typed, frozen dataclasses, validated when a stage starts
- errors       errors a user can act on, printed as one line
- artifacts    atomic writes, digests, Arrow files read without copying
- cli          what the stage scripts share: malloc tuning, one-line errors
- determinism  seeds and deterministic kernels
- code_deps    the import closure of a piece of code (dvc.yaml deps, the evaluation cache key)
- hub          the Hugging Face Hub, cache first: revisions to commits, files, one-line failures
"""

from .._face import lazy

_FACE = {
    "params": ["Params", "load_params", "parse_params", "BUILTIN_TINY"],
    "errors": ["PipelineError", "ParamsError", "CorpusError", "RejectBoundExceeded"],
    "artifacts": ["SPLITS", "ArrowWriter", "atomic_dir", "atomic_write_text", "write_json", "read_arrow",
                  "iter_batches", "file_digest", "dir_digest"],
    "cli": ["run_stage"],
    "determinism": ["set_determinism"],
    "code_deps": ["import_closure", "source_digest"],
    "hub": ["HubError", "resolve", "snapshot", "download_command"],
}
__all__, __getattr__, __dir__ = lazy(__name__, _FACE)
