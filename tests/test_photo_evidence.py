"""Issue 19's observation and evidence scripts end to end at a tiny scale: the shipped
example is what scripts/make_observation.py makes (a linear, valid blur of a larger crop,
noise, 8 bits), and scripts/photo_evidence.py runs every loss x boundary on such
observations, measures them against the truth and writes its table, picture and provenance."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.signal import convolve2d

from bpdip.data import DATA_ROOT, center_crop, load_image
from bpdip.physics import make_kernel

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_example_is_made_as_a_camera_makes_it():
    from skimage import data

    mk = _script("make_observation")
    scene = data.chelsea().astype(np.float64) / 255
    k = np.load(DATA_ROOT / "observed" / "gaussian_kernel.npy")
    np.testing.assert_allclose(k, make_kernel("gaussian"))
    y, truth = mk.observe(scene, k, mk.CROP, mk.NOISE_VAR, mk.SEED)
    np.testing.assert_array_equal(np.asarray(Image.open(DATA_ROOT / "observed" / "chelsea_blurred.png")), y)
    np.testing.assert_array_equal(np.asarray(Image.open(DATA_ROOT / "observed" / "chelsea_truth.png")),
                                  mk.quantise(truth))
    np.testing.assert_array_equal(truth, center_crop(scene, 96))  # the truth is y's frame of the scene
    # linear, not circular: y matches the valid convolution of the grown crop (to the noise)
    grown = scene[(300 - 96) // 2 - 7:(300 - 96) // 2 + 103, (451 - 96) // 2 - 7:(451 - 96) // 2 + 103]
    clean = np.stack([convolve2d(grown[..., c], k, mode="valid") for c in range(3)], -1)
    assert np.abs(y / 255 - clean).max() < 8 * np.sqrt(2) / 255 + 0.5 / 255
    assert np.sqrt(np.mean((y / 255 - clean) ** 2)) == pytest.approx(np.sqrt(2 + 1 / 12) / 255, rel=0.1)


def test_make_observation_writes_only_where_told(tmp_path):
    """``--help`` prints its usage and writes nothing (it used to rewrite data/observed/);
    ``--out`` writes the shipped files' pixels and kernel into another folder."""
    import subprocess
    import sys

    script = str(ROOT / "scripts" / "make_observation.py")
    shipped = {p.name: p.stat().st_mtime_ns for p in (DATA_ROOT / "observed").iterdir()}
    helped = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and helped.stdout.startswith("usage:")
    assert {p.name: p.stat().st_mtime_ns for p in (DATA_ROOT / "observed").iterdir()} == shipped
    subprocess.run([sys.executable, script, "--out", str(tmp_path)], check=True, capture_output=True, timeout=300)
    for name in ("chelsea_blurred.png", "chelsea_truth.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / name)),
                                      np.asarray(Image.open(DATA_ROOT / "observed" / name)))
    np.testing.assert_array_equal(np.load(tmp_path / "gaussian_kernel.npy"),
                                  np.load(DATA_ROOT / "observed" / "gaussian_kernel.npy"))


def test_photo_evidence_end_to_end_at_a_tiny_scale(tmp_path):
    ev = _script("photo_evidence")
    out = tmp_path / "photo"
    result = ev.main(["--images", "chelsea,coffee", "--kernels", "shake", "--losses", "bp,bp_tv", "--iterations",
                      "12", "--model", "slim", "--crop", "24", "--log-every", "4", "--out", str(out),
                      "--set", "threads=1"])
    frame = pd.read_csv(out / "per_image.csv")
    methods = set(zip(frame["method"], frame["boundary"].fillna("")))
    assert {("bp_tv", "valid"), ("bp_tv", "circular"), ("bp", "valid"), ("bp", "circular"), ("input", ""), ("wiener_oracle", ""),
            ("unsupervised_wiener", ""), ("richardson_lucy_oracle", ""), ("richardson_lucy", "")} == methods
    assert len(frame) == 2 * (1 + 4 + 4) and frame["psnr"].notna().all()
    # every restored image is measured against its truth file, which the runs never read
    truth = np.asarray(Image.open(out / "observations" / "coffee-shake.truth.png"), dtype=np.float64) / 255
    restored = load_image(out / "jobs" / "coffee-shake" / "bp_tv-valid" / "restored" / "coffee-shake.png")
    row = frame[(frame.observation == "coffee-shake") & (frame.method == "bp_tv") & (frame.boundary == "valid")]
    assert float(row.psnr.iloc[0]) == pytest.approx(10 * np.log10(1 / np.mean((restored - truth) ** 2)), abs=0.05)
    summary = (out / "summary.md").read_text()
    assert "bp_tv valid" in summary and "Targets" in summary
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["observations"][0]["truth"] == "observations/chelsea-shake.truth.png"
    assert set(result["targets"]) >= {"bp_tv_valid", "input", "wiener_oracle", "circular"}
    assert Image.open(out / "photo.png").size[0] > 0
    assert (out / "jobs" / "coffee-shake" / "bp_tv-valid" / "restored" / "coffee-shake.extended.png").is_file()


def test_photo_evidence_takes_issue_32s_observation_kinds_and_measures_every_choice(tmp_path):
    """A smooth picture (retina), a defocus disk, a long motion blur, noise var 0.3 and 4; the
    runs get the truth for measurement only, and every rule's choice on every stream is in
    choices.csv, measured by the run against the truth file."""
    ev = _script("photo_evidence")
    out = tmp_path / "photo"
    ev.main(["--images", "retina", "--kernels", "disk,shake:length=21", "--noise-var", "0.3,4", "--losses", "bp_tv",
             "--boundaries", "valid", "--iterations", "12", "--model", "slim", "--crop", "24", "--log-every", "4",
             "--out", str(out), "--set", "threads=1"])
    names = {"retina-disk-var0.3", "retina-disk-var4", "retina-shake-length21-var0.3", "retina-shake-length21-var4"}
    frame = pd.read_csv(out / "per_image.csv")
    assert set(frame.observation) == names
    assert np.load(out / "observations" / "retina-shake-length21-var4.npy").shape == (23, 23)  # a 21 px line
    k = np.load(out / "observations" / "retina-disk-var4.npy")
    assert k.shape == (7, 7) and np.abs(np.fft.fft2(k, (24, 24))).min() < 0.02  # the disk's OTF has (near) zeros
    y = {v: np.asarray(Image.open(out / "observations" / f"retina-disk-var{v}.png"), dtype=np.float64)
         for v in ("0.3", "4")}
    truth = np.asarray(Image.open(out / "observations" / "retina-disk-var4.truth.png"), dtype=np.float64)
    assert np.std(y["4"] - truth) > np.std(y["0.3"] - truth)  # the stated noise levels
    c = pd.read_csv(out / "choices.csv")
    assert set(c.stream) == {"perturbed", "clean", "average"} and set(c.observation) == names
    assert {"wmv", "emv", "discrepancy", "bp_discrepancy", "oracle", "fixed"} == set(c[c.stream == "average"].rule)
    assert (c.groupby("observation").restored.sum() == 1).all()  # one restored choice per run
    best = c[c.rule.isin(["oracle", "fixed"])].groupby("observation").psnr.max()
    np.testing.assert_allclose(c.psnr - c.observation.map(best), c.gap_db)  # the gap to the best logged/final image
    restored = c[c.restored].set_index("observation")
    row = frame[(frame.method == "bp_tv")].set_index("observation")
    for name in names:  # the run's own PSNR of its restored image is this script's, up to the 8-bit truth
        assert restored.loc[name, "psnr"] == pytest.approx(row.loc[name, "psnr"], abs=0.1)
    assert "Every rule on every stream" in (out / "summary.md").read_text()


def test_cg_tol_check_runs_both_tolerances_and_compares_their_curves(tmp_path):
    """scripts/cg_tol_check.py at a tiny scale: one valid BP run per tolerance, read back from
    the records; the reference's curve gap to itself is 0, and the loose solve is cheaper."""
    check = _script("cg_tol_check")
    out = tmp_path / "tol"
    assert check.main(["--out", str(out), "--tols", "1e-8,1e-2", "--images", "face", "--kernels", "gaussian",
                       "--losses", "bp", "--crop", "24", "--model", "slim", "--iterations", "6", "--log-every",
                       "2"]) == 0
    df = pd.read_csv(out / "per_run.csv")
    assert list(df.cg_tol) == [1e-8, 1e-2] and (df.image == "face").all() and (df.loss == "bp").all()
    ref, loose = df.iloc[0], df.iloc[1]
    assert ref.max_curve_gap_db == 0 and np.isfinite(loose.max_curve_gap_db)
    assert loose.cg_iterations_mean < ref.cg_iterations_mean
    assert np.isfinite(df.peak_psnr).all() and np.isfinite(df.final_psnr).all()
    assert "| 0.01 |" in (out / "summary.md").read_text()
    assert json.loads((out / "provenance.json").read_text())["settings"]["tols"] == "1e-8,1e-2"
    assert len(list((out / "store").iterdir())) == 2  # the two tolerances are two runs of one store
