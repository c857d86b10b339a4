"""bpdip's command line (Hydra). Examples:

    python run.py                                   # one Table I cell: uniform, var 0.3, BP
    python run.py -m kernel=uniform,radial,gaussian loss=bp,bp_tv
    python run.py -m experiment=table1              # all 36 cells
    python run.py experiment=demo                   # LS vs BP on a small crop, ~2 min on a CPU
"""

import hydra

from bpdip.runner import main as run_job


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg):
    return run_job(cfg)


if __name__ == "__main__":
    main()
