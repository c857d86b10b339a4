"""scripts/stopping_targets.py on hand-made records: the best stream's oracle per cell, each
choice's gap to it, and the targets (issue 32)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("stopping_targets", ROOT / "scripts" / "stopping_targets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _job(path: Path, loss: str, images: dict) -> None:
    path.mkdir(parents=True)
    summary = {"run": {"cell": {"kernel": "uniform", "noise_var": 2.0, "loss": loss}},
               "images": {name: {"status": "complete", "choices": {
                   s: {r: {"iteration": 1, "psnr": v} for r, v in rules.items()} for s, rules in choices.items()}}
                   for name, choices in images.items()}}
    (path / "summary.json").write_text(json.dumps(summary))


def test_gaps_against_the_best_streams_oracle(tmp_path):
    st = _script()
    # cell bp: average's oracle (30, 32 -> 31) beats perturbed's (29, 31 -> 30); emv on the
    # average: (30.5 + 31.5) / 2 = 31 -> gap 0; fixed on the perturbed: 28 -> gap -3
    _job(tmp_path / "a", "bp", {
        "face": {"perturbed": {"oracle": 29.0, "fixed": 27.0}, "average": {"oracle": 30.0, "emv": 30.5}},
        "zebra": {"perturbed": {"oracle": 31.0, "fixed": 29.0}, "average": {"oracle": 32.0, "emv": 31.5}}})
    # cell ls: one image; emv 0.3 dB below the oracle
    _job(tmp_path / "b", "ls", {"face": {"perturbed": {"oracle": 25.0, "fixed": 25.0},
                                         "average": {"oracle": 24.0, "emv": 24.7}}})
    cells = st.cell_values(tmp_path)
    g = st.gaps(cells)
    assert sorted(g["average.emv"]) == pytest.approx([-0.3, 0.0])
    assert sorted(g["perturbed.fixed"]) == [-3.0, 0.0]
    text = st.table(cells)
    assert "| average.emv | -0.15 | -0.30 | 2/2 | met |" in text
    assert "| perturbed.fixed | -1.50 | -3.00 | 1/2 | missed |" in text
