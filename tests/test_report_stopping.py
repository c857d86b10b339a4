"""The report's stopping part (bpdip/report/stopping.py) from records with known choices:
per setting and rule the mean PSNR, the gap to the oracle, the share within 0.5 dB, and
issue 10's targets, computed by hand here."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bpdip.records import curve_rows, write_json, write_metrics_csv
from bpdip.report import build_report, load_local, write_report
from bpdip.report.build import markdown

ITERS = list(range(0, 1000, 100))


def write_job(root, loss, var, choices: dict[str, dict[str, tuple]], iterations=1000):
    """``choices``: image -> rule -> (iteration, psnr, stopped, stop_iteration)."""
    root.mkdir(parents=True, exist_ok=True)
    rows, entries = [], {}
    for name, rules in choices.items():
        oracle_it, oracle_psnr = rules["oracle"][:2]
        curve = [{"iteration": it, "psnr": oracle_psnr - abs(it - oracle_it) / 100, "ssim": 0.5, "ssim_dr2": 0.6,
                  "loss": 1.0, "seconds": 0.1, "wmv_var": 1e-3} for it in ITERS]
        rows += curve_rows(name, curve)
        stopping = {r: {"iteration": it, "stopped": st, "stop_iteration": se, "psnr": p, "ssim": 0.5, "ssim_dr2": 0.6}
                    for r, (it, p, st, se) in rules.items()}
        entries[name] = {"status": "complete", "peak_psnr": oracle_psnr, "peak_iteration": oracle_it,
                         "peak_ssim": 0.5, "peak_ssim_dr2": 0.6, "final_psnr": rules["fixed"][1], "final_ssim": 0.5,
                         "final_ssim_dr2": 0.6, "runtime_s": 1.0, "iterations": iterations, "error": None,
                         "stopping": stopping, "stopped_early": False}
    run = {"cell": {"kernel": "uniform", "noise_var": var, "loss": loss}, "config_hash": f"h-{loss}-{var}",
           "protocol_hash": f"p-{loss}-{var}", "seed": 0, "iterations": iterations, "log_every": 100,
           "status": "complete"}
    write_metrics_csv(root / "metrics.csv", rows)
    write_json(root / "summary.json", {"schema": 2, "run": run, "images": entries})


#   image -> rule -> (chosen iteration, PSNR of the chosen image, stopped, stop iteration)
BP4 = {
    "face": {"oracle": (100, 26.0, False, None), "fixed": (1000, 19.0, False, None),
             "wmv": (120, 25.8, True, 420), "discrepancy": (1000, 19.0, False, None)},
    "zebra": {"oracle": (300, 25.0, False, None), "fixed": (1000, 20.0, False, None),
              "wmv": (200, 24.0, True, 500), "discrepancy": (1000, 20.0, False, None)},
}
LS03 = {
    "face": {"oracle": (900, 27.0, False, None), "fixed": (1000, 27.1, False, None),
             "wmv": (990, 27.0, False, None), "discrepancy": (1000, 27.1, False, None)},
    "zebra": {"oracle": (800, 26.0, False, None), "fixed": (1000, 26.2, False, None),
              "wmv": (700, 25.9, True, 999), "discrepancy": (1000, 26.2, False, None)},
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("stop")
    write_job(root / "bp4", "bp", 4, BP4)
    write_job(root / "ls03", "ls", 0.3, LS03)
    rep = build_report(load_local([str(root)]))
    return rep, root


def test_the_table_holds_each_rules_numbers_by_hand(report):
    rep, _ = report
    t = rep.stopping.set_index(["loss", "noise_var", "rule"])
    wmv = t.loc[("bp", 4.0, "wmv")]
    assert wmv["n"] == 2 and wmv["mean_psnr"] == pytest.approx((25.8 + 24.0) / 2)
    assert wmv["gap_db"] == pytest.approx(((25.8 - 26.0) + (24.0 - 25.0)) / 2)
    assert wmv["within_05"] == pytest.approx(0.5)  # face -0.2 dB in, zebra -1.0 dB out
    assert wmv["iteration"] == pytest.approx(160) and wmv["stopped"] == 1.0
    assert wmv["ran"] == pytest.approx((421 + 501) / 2) and wmv["full"] == 1000
    fixed = t.loc[("bp", 4.0, "fixed")]
    assert fixed["gap_db"] == pytest.approx((-7.0 - 5.0) / 2) and fixed["within_05"] == 0
    # ls: wmv stopped on zebra only; face never stopped: it runs the full 1000
    assert t.loc[("ls", 0.3, "wmv")]["ran"] == pytest.approx((1000 + 1000) / 2)


def test_targets_are_computed_over_the_grid(report):
    from bpdip.report.stopping import targets

    rep, _ = report
    got = targets(rep.stopping)["rules"]["wmv"]
    gap_bp = ((25.8 - 26.0) + (24.0 - 25.0)) / 2
    gap_ls = ((27.0 - 27.0) + (25.9 - 26.0)) / 2
    assert got["mean_gap_db"] == pytest.approx((gap_bp + gap_ls) / 2)  # mean over the settings
    assert got["bp_high_noise_gain_db"] == pytest.approx((25.8 + 24.0) / 2 - (19.0 + 20.0) / 2)
    ran = 421 + 501 + 1000 + 1000
    assert got["iterations_cut"] == pytest.approx(1 - ran / 4000)
    assert got["within_05"] == pytest.approx(3 / 4)


def test_the_markdown_csv_tex_and_figure_are_written(report, tmp_path):
    rep, _ = report
    write_report(rep, tmp_path)
    md = (tmp_path / "report.md").read_text()
    section = md[md.index("## Stopping rules"):]
    assert "| BP / Uniform / σ²=4 | 2 | 25.50 (0, 100%) @200 | 19.50 (-6.00, 0%) @1000 | 24.90 (-0.60, 50%) @160 |" \
        in section
    frame = pd.read_csv(tmp_path / "stopping.csv")
    assert set(frame.rule) == {"oracle", "fixed", "wmv", "discrepancy"} and len(frame) == 8
    assert "\\begin{longtable}" in (tmp_path / "stopping.tex").read_text()
    assert (tmp_path / "fig1_stopping.png").stat().st_size > 10_000


def test_records_without_the_rules_give_no_stopping_rows(tmp_path):
    """Version-1 records (the earlier single-seed results/cpu_grid) have no stopping choices: nothing is invented."""
    import json

    write_job(tmp_path / "j", "bp", 4, BP4)
    path = tmp_path / "j" / "summary.json"
    summary = json.loads(path.read_text())
    for e in summary["images"].values():
        del e["stopping"]
    path.write_text(json.dumps(summary))
    rep = build_report(load_local([str(tmp_path)]))
    assert rep.stopping.empty and "## Stopping rules" not in markdown(rep)
    assert not math.isnan(rep.cell("bp", "uniform", 4).peak["psnr"])


def test_stop_early_records_against_the_full_runs_by_hand(tmp_path):
    """scripts/compare_stop_early.py: images matched by (kernel, noise, loss, seed, image);
    the same choice where the iterations agree; the iterations saved summed by hand."""
    import importlib.util
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "compare_stop_early.py"
    spec = importlib.util.spec_from_file_location("compare_stop_early", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    early_comparison, md_early_comparison = module.early_comparison, module.md_early_comparison
    write_job(tmp_path / "full" / "bp4", "bp", 4, BP4)
    early = {"face": {**BP4["face"]}, "zebra": {**BP4["zebra"], "wmv": (250, 24.3, True, 550)}}  # zebra differs
    write_job(tmp_path / "early" / "bp4", "bp", 4, early, iterations=450)
    path = tmp_path / "early" / "bp4" / "summary.json"
    summary = json.loads(path.read_text())
    summary["images"]["face"]["final_psnr"] = 25.8  # the restored image is wmv's candidate
    summary["images"]["zebra"]["iterations"] = 600
    path.write_text(json.dumps(summary))
    frame = early_comparison(load_local([str(tmp_path / "full")]), load_local([str(tmp_path / "early")]), "wmv")
    assert list(frame.image) == ["face", "zebra"] and list(frame.same_choice) == [True, False]
    assert list(frame.full_iterations) == [1000, 1000] and list(frame.early_iterations) == [450, 600]
    assert list(frame.full_psnr) == [25.8, 24.0] and list(frame.early_psnr) == [25.8, 24.3]
    assert list(frame.restored_psnr) == [25.8, 20.0]  # zebra's final_psnr: BP4's hand-made fixed value
    text = md_early_comparison(frame, "wmv")
    assert "chose the same iteration in 1" in text and "full 2,000, `stop.early` 1,050 (47.5 % fewer)" in text
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "full"), str(tmp_path / "early"),
                           "--rule", "wmv"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "47.5 % fewer" in done.stdout, done.stderr
    missing = subprocess.run([sys.executable, str(script), str(tmp_path / "nothing"), str(tmp_path / "early")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
