"""train.num_processes > 1: the stage reruns itself, once, as that many DDP processes. One process
on a machine with several GPUs reruns itself once too, on the first GPU only: a single process
seeing several GPUs gets transformers' nn.DataParallel, which trl refuses."""

import os
import sys

from ..core.errors import ParamsError

LAUNCHED = "PRONOUNCE_LAUNCHED"  # in the environment of the processes relaunch_command starts


def relaunch_command(num_processes: int, argv: list[str], note=None) -> tuple[list[str], dict] | None:
    """The `accelerate launch` command and environment that rerun this stage as `num_processes`
    DDP processes, or None when one process is asked for (on at most one GPU) or this process
    was started by a launcher: ours (LAUNCHED, set in its children's environment, so a relaunch never recurses)
    or a user's own (LOCAL_RANK, e.g. a multi-node `accelerate launch --config_file`).

    --multi_gpu is explicit, so a default accelerate config cannot make it one process; it is
    torch's elastic launcher (torchrun) whatever the device: on a CPU each process finds no
    CUDA and joins a gloo group (accelerate's --cpu launcher would start one process unless MPI
    is set up). --mixed_precision no leaves precision to the recipe (transformers reads a
    launcher's setting when the recipe asks for fp32).

    One process where several GPUs are visible: this stage again, in a process that sees only the
    first of them (one_gpu_environment), with a one-line `note` (default: to stderr)."""
    if LAUNCHED in os.environ or "LOCAL_RANK" in os.environ:
        return None
    if num_processes <= 1:
        env = one_gpu_environment(os.environ)
        if env is None:
            return None
        (note or _stderr)(f"train.num_processes is 1 but this machine has {_gpus()} GPUs: training on one "
                          f"(CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}); set train.num_processes to use more")
        return [sys.executable, *argv], {**env, LAUNCHED: "1"}
    import torch

    if torch.cuda.is_available() and num_processes > torch.cuda.device_count():  # one GPU a process
        raise ParamsError(f"params.yaml: train.num_processes is {num_processes} but this machine has "
                          f"{torch.cuda.device_count()} GPU(s)")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", str(num_processes), "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(_free_port()), *argv]
    return command, {**os.environ, LAUNCHED: "1"}


def _gpus() -> int:
    """The GPUs this process may use (torch counts them through NVML, without initialising CUDA,
    and honours CUDA_VISIBLE_DEVICES)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def one_gpu_environment(environ) -> dict | None:
    """The environment for one process to train on one GPU where several are visible (the first of
    CUDA_VISIBLE_DEVICES, else GPU 0), or None when at most one is. A fresh process, since CUDA
    reads CUDA_VISIBLE_DEVICES once, at its first call, which any library may already have made."""
    if _gpus() <= 1:
        return None
    visible = [d.strip() for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return {**environ, "CUDA_VISIBLE_DEVICES": visible[0] if visible else "0"}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _free_port() -> int:
    """A port free now on this machine for the process group's rendezvous (the default 29500
    would clash with any other run of several processes here)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
