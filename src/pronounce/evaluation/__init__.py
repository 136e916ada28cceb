"""Generating the test split's answers: greedy, batched, cached across runs.

- evaluate    stage `evaluate`: one config's checkpoints (or the base model) on the test split
- generation  batched greedy generation with a cache keyed on the code it runs
- kvcache     a key/value cache for CPU generation that does not copy itself each step
"""

from .._face import lazy

_FACE = {
    "evaluate": ["run_evaluate"],
    "generation": ["Generator", "generate_checkpoint", "load_model"],
}
__all__, __getattr__, __dir__ = lazy(__name__, _FACE)
