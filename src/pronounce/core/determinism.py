"""Seeds and deterministic kernels for training and evaluation (`train.determinism`,
`eval.determinism`), one function for both.

Both modes seed Python, NumPy and torch and switch torch to deterministic algorithms, so a
rerun on the same hardware and versions gives the same bytes. They differ only on CUDA:

  seeded  deterministic cuBLAS (CUBLAS_WORKSPACE_CONFIG=:4096:8), cuDNN deterministic, no TF32;
          an op with no deterministic CUDA kernel warns instead of failing a run of hours
  full    what transformers' enable_full_determinism does besides: CUDA_LAUNCH_BLOCKING=1
          (every kernel synchronous; generation about twice as slow), and an op with no
          deterministic kernel is an error

Launch blocking changes no result, only when the host waits, so `seeded` is the default;
`full` is for hunting a nondeterministic op. On a CPU the two are the same run.
"""

import os

MODES = ("seeded", "full")
CUBLAS_WORKSPACE = ":4096:8"  # one of the two settings cuBLAS documents as deterministic


def set_determinism(seed: int, mode: str = "seeded") -> None:
    """Seed every RNG and make torch's kernels deterministic (see the module's docstring)."""
    import torch
    from transformers import set_seed

    if mode not in MODES:
        raise ValueError(f"determinism must be one of {', '.join(MODES)}, got {mode!r}")
    if torch.cuda.is_available():
        # Read when cuBLAS creates its handle: set before the first matmul on the device.
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
        if mode == "full":
            os.environ["CUDA_LAUNCH_BLOCKING"] = "1"
    set_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=mode == "seeded")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    # TF32 rounds matmul inputs to 10 mantissa bits on Ampere and later: off, so a GPU run
    # computes in the precision the recipe names.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
