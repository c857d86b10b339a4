"""The paper's published numbers, as data: the one place they live in this project.

Table I of Zukerman, Tirer, Giryes (2020), "BP-DIP: A Backprojection based Deep Image
Prior": PSNR [dB] / SSIM averaged over Set14, copied from /work/shared/PROTOCOL.md
("The paper's Table I"), which transcribes the paper's table. The SSIM was computed by the
authors' old scikit-image with data_range = 2 for float images (PROTOCOL "Optimisation and
measurement"), so it compares with our ``ssim_dr2``.
"""

from __future__ import annotations

import math

# Row order and labels of Table I (loss config name -> printed label).
LOSSES = ("ls", "ls_tv", "bp", "bp_tv")
LOSS_LABELS = {"ls": "LS", "ls_tv": "LS-TV", "bp": "BP", "bp_tv": "BP-TV"}
# Column order: kernel blocks, then noise variance (0..255 scale) within each block.
KERNELS = ("uniform", "radial", "gaussian")
KERNEL_LABELS = {"uniform": "Uniform", "radial": "Radial", "gaussian": "Gaussian"}
NOISE_VARS = (0.3, 2.0, 4.0)

# The table exactly as printed (rows LS, LS-TV, BP, BP-TV; columns U 0.3, U 2, U 4,
# R 0.3, R 2, R 4, G 0.3, G 2, G 4), as "PSNR/SSIM" strings so that the transcription
# can be checked against PROTOCOL.md by eye.
_TABLE_TEXT = {
    "ls": "26.31/0.83 26.84/0.84 26.45/0.83 28.09/0.88 28.10/0.88 28.49/0.87 27.42/0.87 27.22/0.86 27.66/0.86",
    "ls_tv": "26.36/0.83 26.95/0.84 26.80/0.84 28.41/0.88 28.44/0.88 28.30/0.88 27.74/0.86 27.31/0.85 27.62/0.86",
    "bp": "29.78/0.91 26.57/0.84 25.41/0.80 32.50/0.95 28.80/0.89 27.44/0.86 29.73/0.91 27.13/0.85 26.05/0.82",
    "bp_tv": "29.51/0.90 28.25/0.88 27.31/0.86 31.75/0.93 30.10/0.91 28.94/0.89 29.65/0.91 28.94/0.90 28.24/0.88",
}


def _parse() -> dict[tuple[str, str, float], tuple[float, float]]:
    table = {}
    columns = [(k, v) for k in KERNELS for v in NOISE_VARS]
    for loss, text in _TABLE_TEXT.items():
        cells = text.split()
        assert len(cells) == len(columns), loss
        for (kernel, var), cell in zip(columns, cells):
            psnr, ssim = cell.split("/")
            table[(loss, kernel, var)] = (float(psnr), float(ssim))
    return table


# (loss, kernel, noise_var) -> (PSNR dB, SSIM with data_range 2), 36 cells.
TABLE1: dict[tuple[str, str, float], tuple[float, float]] = _parse()


def canonical_noise(noise_var) -> float:
    """A noise variance as the float key used in TABLE1 (JSON may hold 2 or 2.0)."""
    value = float(noise_var)
    for v in NOISE_VARS:
        if math.isclose(value, v, rel_tol=1e-9, abs_tol=1e-12):
            return v
    return value


def table1(loss: str, kernel: str, noise_var) -> tuple[float, float] | None:
    """The paper's (PSNR, SSIM) for a setting, or None where the paper has no such cell."""
    return TABLE1.get((loss, kernel, canonical_noise(noise_var)))


# The protocol's settings that a reproduction must match to be compared with TABLE1
# (paper Sec. IV; PROTOCOL "Losses", "Network", "Optimisation and measurement").
ITERATIONS = {"ls": 10000, "ls_tv": 10000, "bp": 7000, "bp_tv": 7000}
TV_WEIGHTS = {("ls_tv", "uniform"): 1e-6, ("ls_tv", "radial"): 1e-5, ("ls_tv", "gaussian"): 1e-5,
              ("bp_tv", "uniform"): 1e-3, ("bp_tv", "radial"): 1e-3, ("bp_tv", "gaussian"): 1e-3}
NETWORK = {"in_channels": 32, "channels_down": [128] * 5, "channels_up": [128] * 5, "channels_skip": [4] * 5}
LEARNING_RATE = 0.01
REG_NOISE_STD = 0.03
N_IMAGES = 14  # Set14, full size


# Super-resolution (issue 14): the DIP paper's Set14 numbers, Y-channel PSNR [dB] recomputed
# with DIP's eval script (rgb2ycbcr Y, a 4-pixel border shaved) from the DIP authors'
# published outputs, as docs/references.md "Deep Image Prior super-resolution"
# transcribes them (Ulyanov, Vedaldi, Lempitsky, "Deep Image Prior", CVPR 2018 / IJCV 2020;
# DmitryUlyanov/deep-image-prior). DIP's loss is least squares through its lanczos2
# downsampler, so its row is the one to read beside our LS. Set5 is not in this project.
SR_SET14 = {  # method -> {factor: Y-PSNR}
    "bicubic": {4: 26.05, 8: 23.10},
    "tv": {4: 26.42, 8: 23.49},
    "dip": {4: 27.01, 8: 24.15},
    "lapsrn": {4: 28.13, 8: 24.36},
}
SR_LABELS = {"bicubic": "bicubic", "tv": "TV prior", "dip": "DIP", "lapsrn": "LapSRN (trained)"}
# our rows (loss config names, then the baseline) and the paper row each is read beside
SR_ROWS = ("ls", "bp", "bp_tv", "bicubic")
SR_PAPER_ROW = {"ls": "dip", "bicubic": "bicubic"}
# DIP's SR protocol (docs/references.md): what a run must match for its numbers to be compared
# with SR_SET14 (iterations and input noise per factor; LR by PIL's Lanczos, no noise)
DIP_SR_ITERATIONS = {4: 2000, 8: 4000}
DIP_SR_REG_NOISE = {4: 0.03, 8: 0.05}
DIP_SR_SHAVE = 4


def sr_paper(method: str, factor: int) -> float | None:
    """The DIP paper's Set14 Y-PSNR for an SR table row (``ls`` reads DIP's), or None."""
    key = SR_PAPER_ROW.get(method, method)
    return SR_SET14.get(key, {}).get(int(factor))
