"""bpdip's SLURM launcher (``hydra/launcher=slurm``, conf/hydra/launcher/slurm.yaml); see
:mod:`hydra_plugins.bpdip_slurm.launcher`."""
