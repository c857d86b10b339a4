"""The pieces of ``scripts/bench.py`` (issue 6's benchmark), one module each:

- ``config``: networks, engine variants, the defaults per device, issue 6's targets;
- ``measure``: problems (an image size, its y and loss) and the timed runs: engine
  variants through ``bpdip.loop.restore`` and the two plain-PyTorch reference loops;
- ``checks``: graphs == eager and stacked == separate on the device, curve agreement;
- ``quality``: the bf16-vs-TF32 peak-PSNR check that decides the GPU default precision;
- ``profile``: where one step's time goes (torch.profiler, by kernel and category);
- ``summary``: the Table I projection, ratios, device description and printed table.

Nothing here imports Hydra, OmegaConf or W&B: the benchmark runs on a bare GPU machine
from a checkout (numpy, torch, pillow, scikit-image, tqdm).
"""
