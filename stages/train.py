"""Stage train@<config>: SFT of one config -> models/<config>/ (adapter, per-epoch adapters, processor).
With train.num_processes > 1 it reruns itself as that many DDP processes under `accelerate launch`."""

import subprocess
import sys

from pronounce.cli import run_stage
from pronounce.params import config_params, load_params
from pronounce.launch import relaunch_command
from pronounce.train import run_train


def main(name: str):
    params = load_params()
    config_params(params, name)
    relaunch = relaunch_command(params["train"]["num_processes"], [sys.argv[0], name])
    if relaunch:
        command, env = relaunch
        sys.exit(subprocess.run(command, env=env).returncode)  # an argument list: no shell sees the params
    timing = run_train(params, name, "models/base", "data/decoded", "data/materialized",
                       f"models/{name}", f"dvclive/{name}")
    if timing is not None:  # None in the DDP processes other than rank 0
        print(f"train {name}: {timing['processes']} process(es), {timing['steps']} steps, "
              f"loss {timing['train_loss']:.4f}, {timing['seconds']:.0f} s")


if __name__ == "__main__":
    run_stage(main, sys.argv[1])
