"""bpdip's command line (Hydra). Examples:

    python run.py                                   # one Table I cell: uniform, var 0.3, BP
    python run.py -m kernel=uniform,radial,gaussian loss=bp,bp_tv
    python run.py -m experiment=table1              # all 36 cells
    python run.py experiment=demo                   # LS vs BP on a small crop, ~1 min on a CPU
"""

import hydra
from omegaconf import OmegaConf


def gpu_count() -> int:
    """CUDA devices visible here (1 without CUDA): conf/hydra/launcher/joblib_gpus.yaml."""
    import torch

    return max(1, torch.cuda.device_count())


OmegaConf.register_new_resolver("bpdip_gpu_count", gpu_count, replace=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    # imported here, so that a launcher that only submits jobs never loads torch
    from bpdip.runner import main as run_job

    return run_job(cfg)


if __name__ == "__main__":
    import sys
    from pathlib import Path

    from bpdip.cli import bad_choice

    # an unknown group option (kernel=foo) gets one line here, not Hydra's multi-line message
    message = bad_choice(sys.argv[1:], Path(__file__).resolve().parent / "conf")
    if message:
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    main()
