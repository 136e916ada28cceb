"""train.num_processes > 1: the stage reruns itself, once, as that many DDP processes."""

import os
import sys

from .errors import ParamsError

LAUNCHED = "PRONOUNCE_LAUNCHED"  # in the environment of the processes relaunch_command starts


def relaunch_command(num_processes: int, argv: list[str]) -> tuple[list[str], dict] | None:
    """The `accelerate launch` command and environment that rerun this stage as `num_processes`
    DDP processes, or None when one process is asked for or this process was started by a
    launcher: ours (LAUNCHED, set in its children's environment, so a relaunch never recurses)
    or a user's own (LOCAL_RANK, e.g. a multi-node `accelerate launch --config_file`).

    --multi_gpu is explicit, so a default accelerate config cannot make it one process; it is
    torch's elastic launcher (torchrun) whatever the device: on a CPU each process finds no
    CUDA and joins a gloo group (accelerate's --cpu launcher would start one process unless MPI
    is set up). --mixed_precision no leaves precision to the recipe (transformers reads a
    launcher's setting when the recipe asks for fp32)."""
    if num_processes <= 1 or LAUNCHED in os.environ or "LOCAL_RANK" in os.environ:
        return None
    import torch

    if torch.cuda.is_available() and num_processes > torch.cuda.device_count():  # one GPU a process
        raise ParamsError(f"params.yaml: train.num_processes is {num_processes} but this machine has "
                          f"{torch.cuda.device_count()} GPU(s)")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", str(num_processes), "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(_free_port()), *argv]
    return command, {**os.environ, LAUNCHED: "1"}


def _free_port() -> int:
    """A port free now on this machine for the process group's rendezvous (the default 29500
    would clash with any other run of several processes here)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
