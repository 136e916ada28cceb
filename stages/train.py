"""Stage train@<config>: SFT of one config -> OUT (adapter, per-epoch adapters, processor) and its
training log -> LIVE. With train.num_processes > 1 it reruns itself as that many DDP processes
under `accelerate launch`.

    python stages/train.py CONFIG --base BASE --decoded DECODED --materialized MATERIALIZED --out OUT --live LIVE
"""

import argparse
import subprocess
import sys

from pronounce.core.cli import run_stage
from pronounce.core.params import load_params
from pronounce.training.launch import relaunch_command
from pronounce.training.train import run_train


def main(a):
    job = load_params().train_job(a.config)
    relaunch = relaunch_command(job.num_processes, sys.argv)
    if relaunch:
        command, env = relaunch
        sys.exit(subprocess.run(command, env=env).returncode)  # an argument list: no shell sees the params
    timing = run_train(job, a.base, a.decoded, a.materialized, a.out, a.live)
    if timing is not None:  # None in the DDP processes other than rank 0
        print(f"train {a.config}: {timing['processes']} process(es), {timing['steps']} steps, "
              f"loss {timing['train_loss']:.4f}, {timing['seconds']:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config")
    for name in ("--base", "--decoded", "--materialized", "--out", "--live"):
        parser.add_argument(name, required=True)
    run_stage(main, parser.parse_args())
