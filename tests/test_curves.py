"""bpdip.curves, the one home of the paper's rule (PROTOCOL "Optimisation and measurement"),
against hand-worked examples and independent numpy computations."""

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bpdip import curves

ROOT = Path(__file__).resolve().parents[1]


def test_best_is_the_first_highest_finite_value():
    rows = [{"iteration": 0, "psnr": math.nan}, {"iteration": 1, "psnr": 20.0}, {"iteration": 2, "psnr": 21.0},
            {"iteration": 3, "psnr": 21.0}, {"iteration": 4, "psnr": math.inf}, {"iteration": 5, "psnr": None}]
    assert curves.best(rows)["iteration"] == 2  # the earliest of equal maxima; inf, NaN and None never win
    assert curves.best([{"psnr": math.nan}]) is None
    assert curves.best([]) is None


def test_mean_curve_at_common_iterations_and_its_peak():
    a = pd.DataFrame({"iteration": [0, 10, 20, 30], "psnr": [10.0, 20.0, 24.0, 23.0], "ssim": [.1, .2, .3, .4],
                      "ssim_dr2": [.5, .6, .7, .8]})
    b = pd.DataFrame({"iteration": [0, 10, 20], "psnr": [12.0, 22.0, 21.0], "ssim": [.2, .3, .4],
                      "ssim_dr2": [.6, .7, .8]})
    mean, truncated = curves.mean_curve([a, b])
    assert truncated and list(mean["iteration"]) == [0, 10, 20]
    np.testing.assert_allclose(mean["psnr"], [11.0, 21.0, 22.5])
    peak = curves.peak_of(mean)
    # by hand: the mean curve's best iteration is 20 (22.5 dB), not either image's own best
    assert peak["iteration"] == 20 and peak["psnr"] == 22.5 and math.isclose(peak["ssim"], 0.35)
    rows = [{"image": "a", **r} for r in a.to_dict("records")] + [{"image": "b", **r} for r in b.to_dict("records")]
    recs = curves.mean_records(rows, ["a", "b"], ["psnr"])
    assert [r["psnr"] for r in recs] == list(mean["psnr"])


def test_over_seeds_mean_and_sample_sd():
    peaks = [{"psnr": 20.0, "ssim_dr2": .5, "ssim": .4, "iteration": 3}, {"psnr": 22.0, "ssim_dr2": .7, "ssim": .6,
                                                                          "iteration": 5}]
    c = pd.DataFrame({"iteration": [0, 1], "psnr": [1.0, 2.0]})
    s = curves.over_seeds(peaks, [c, c + 1])
    assert s.peak["psnr"] == 21.0 and math.isclose(s.std, math.sqrt(2.0))  # ((1^2 + 1^2) / (2 - 1)) ** 0.5
    assert curves.over_seeds(peaks[:1], [c]).std is None


def test_one_definition_of_the_peak_rule():
    """No module but bpdip.curves picks a record by its highest PSNR itself (max(..., key=...psnr...),
    idxmax): they all call bpdip.curves."""
    offenders = []
    for path in (ROOT / "bpdip").rglob("*.py"):
        if path.name == "curves.py":
            continue
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call):
                src = ast.get_source_segment(text, node) or ""
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if (name == "max" and "key=" in src and "psnr" in src) or name == "idxmax":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
