"""Stage evaluate@<config> / evaluate_base: greedy generation on the test split ->
predictions/<config>/ (final adapter and the epochs `eval.epochs` selects) or predictions/base/
(the untrained base model with its speech LoRA, epoch 0). Generations are cached in
runs/eval-cache/."""

import sys

from pronounce.cli import run_stage
from pronounce.errors import ParamsError
from pronounce.evaluate import run_evaluate
from pronounce.params import config_params, load_params
from pronounce.predictions import BASE_NAME


def main(name: str):
    params = load_params()
    if BASE_NAME in params["configs"]:
        raise ParamsError(f"params.yaml: a config may not be named {BASE_NAME!r} (predictions/{BASE_NAME}/ "
                          "holds the untrained base model's)")
    if name == BASE_NAME:
        run_evaluate(params, BASE_NAME, "models/base", "data/decoded", "data/materialized", None,
                     f"predictions/{BASE_NAME}")
    else:
        config_params(params, name)
        run_evaluate(params, name, "models/base", "data/decoded", "data/materialized", f"models/{name}",
                     f"predictions/{name}")


if __name__ == "__main__":
    run_stage(main, sys.argv[1])
