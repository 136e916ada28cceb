"""Checks a user runs, each a command (`python -m pronounce.checks.<name>`):

- preflight      what the configured run will cost, measured before it costs it
                 (its probe and its projection in probe.py and projection.py)
- fullsize       the real architecture at full size, random weights: the preflight without a download
- cpu_bf16       bf16 matrix products in float32 on a CPU without bf16 kernels (used by fullsize)
- repro_check    after `dvc repro`: does this run reproduce the committed one?
- verify_pulled  a pulled run's numbers re-derived from its predictions alone

Nothing is imported here: each is a command, and verify_pulled and repro_check stay light.
"""

__all__ = ["cpu_bf16", "fullsize", "preflight", "repro_check", "verify_pulled"]
