"""Reports (bpdip.report): Table I and Fig. 1 rebuilt from run records."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bpdip.paper import TABLE1
from bpdip.records import curve_rows, write_json, write_metrics_csv
from bpdip.report import build_report, load_local, write_report
from bpdip.report.cells import FLAGS
from bpdip.report.figure import figure1

REPO = Path(__file__).resolve().parents[1]
ITERS = np.arange(0, 1000, 100)  # logged iterations 0, 100, ..., 900


def synthetic_curve(offset: float, peak_at: float, width: float = 400.0) -> list[dict]:
    """A known PSNR curve (a bump peaking at ``peak_at``) with SSIMs tied to it."""
    curve = []
    for it in ITERS:
        p = 20.0 + offset + 5.0 * math.exp(-(((it - peak_at) / width) ** 2))
        curve.append({"iteration": int(it), "psnr": p, "ssim": p / 40.0, "ssim_dr2": p / 35.0,
                      "loss": 1.0 / (1 + it), "seconds": 0.01 * it})
    return curve


def write_job(root: Path, cell: dict, images: dict[str, list[dict]], status=None, config_hash="h1",
              iterations=1000, final_offset=0.0) -> Path:
    """Write one job directory with bpdip.records' writers (the runner's schema)."""
    status = status or {}
    root.mkdir(parents=True, exist_ok=True)
    rows, entries = [], {}
    for name, curve in images.items():
        rows += curve_rows(name, curve)
        best = max(curve, key=lambda r: r["psnr"]) if curve else None
        last = curve[-1] if curve else None
        st = status.get(name, "complete")
        entries[name] = {
            "status": st,
            "peak_psnr": best and best["psnr"], "peak_iteration": best and best["iteration"],
            "peak_ssim": best and best["ssim"], "peak_ssim_dr2": best and best["ssim_dr2"],
            "final_psnr": last["psnr"] + final_offset if st == "complete" else None,
            "final_ssim": last["ssim"] if st == "complete" else None,
            "final_ssim_dr2": last["ssim_dr2"] if st == "complete" else None,
            "runtime_s": 1.0, "iterations": iterations if st == "complete" else (last["iteration"] if last else 0),
            "error": "loss became non-finite" if st == "failed" else None,
        }
    write_metrics_csv(root / "metrics.csv", rows)
    write_json(root / "summary.json", {
        "schema": 1,
        "run": {"cell": cell, "config_hash": config_hash, "git_commit": "abc1234", "device": "cpu",
                "torch_version": "2.13.0", "iterations": iterations, "log_every": 100, "status": "complete"},
        "images": entries,
    })
    return root


CELL = {"kernel": "uniform", "noise_var": 0.3, "loss": "bp"}
# Two images whose own peaks are at 200 and 600: the mean curve peaks in between, at an
# iteration that is neither image's own best.
IMAGES = {"face": synthetic_curve(0.0, 200.0), "comic": synthetic_curve(3.0, 600.0)}


def expected_peak(curves: list[list[dict]]) -> dict:
    """Independent computation: mean at each iteration, argmax, SSIMs there."""
    psnr = np.mean([[r["psnr"] for r in c] for c in curves], axis=0)
    k = int(np.argmax(psnr))
    return {"psnr": psnr[k], "iteration": int(ITERS[k]),
            "ssim": np.mean([c[k]["ssim"] for c in curves]), "ssim_dr2": np.mean([c[k]["ssim_dr2"] for c in curves])}


def test_peak_is_the_peak_of_the_mean_curve(tmp_path):
    write_job(tmp_path / "job0", CELL, IMAGES)
    report = build_report(load_local([str(tmp_path)]))
    cell = report.cell("bp", "uniform", 0.3)
    want = expected_peak(list(IMAGES.values()))
    assert cell.peak["iteration"] == want["iteration"] == 400
    assert cell.peak["psnr"] == pytest.approx(want["psnr"], abs=1e-12)
    assert cell.peak["ssim_dr2"] == pytest.approx(want["ssim_dr2"], abs=1e-12)
    assert cell.peak["ssim"] == pytest.approx(want["ssim"], abs=1e-12)
    # not the mean of the per-image peaks (that would be an oracle per image)
    own = np.mean([max(r["psnr"] for r in c) for c in IMAGES.values()])
    assert cell.peak["psnr"] < own - 0.1
    assert cell.flags == [] and cell.status == "complete" and not cell.peak_at_end
    pick = "loss == 'bp' and kernel == 'uniform' and noise_var == 0.3"
    row = report.peak.query(pick).iloc[0]
    paper = TABLE1[("bp", "uniform", 0.3)]
    assert row.paper_psnr == paper[0] and row.diff_psnr == pytest.approx(want["psnr"] - paper[0])
    assert row.diff_ssim_dr2 == pytest.approx(want["ssim_dr2"] - paper[1])
    final = report.final.query(pick).iloc[0]
    assert final.final_psnr == pytest.approx(np.mean([c[-1]["psnr"] for c in IMAGES.values()]))


def test_peak_at_the_last_iteration_is_pointed_out(tmp_path):
    rising = {"face": synthetic_curve(0.0, 5000.0, width=4000.0)}  # still rising at 900
    write_job(tmp_path / "job0", CELL, rising)
    report = build_report(load_local([str(tmp_path)]))
    cell = report.cell("bp", "uniform", 0.3)
    assert cell.peak["iteration"] == 900 and cell.peak_at_end
    write_report(report, tmp_path / "out", figure=False)
    assert "@900 (last logged" in (tmp_path / "out" / "report.md").read_text()


def test_mean_is_over_images_at_equal_iterations(tmp_path):
    # comic logged only up to 500 (e.g. a shorter, older record of the same config): the
    # mean may only use iterations both images have, and the cell says so.
    short = [r for r in IMAGES["comic"] if r["iteration"] <= 500]
    write_job(tmp_path / "job0", CELL, {"face": IMAGES["face"], "comic": short})
    report = build_report(load_local([str(tmp_path)]))
    cell = report.cell("bp", "uniform", 0.3)
    assert list(cell.mean_curve["iteration"]) == [0, 100, 200, 300, 400, 500]
    want = np.mean([[r["psnr"] for r in IMAGES["face"][:6]], [r["psnr"] for r in short]], axis=0)
    np.testing.assert_allclose(cell.mean_curve["psnr"], want, atol=1e-12)
    assert "truncated" in cell.flags


def test_sweeps_merge_and_duplicates_keep_the_complete_record(tmp_path):
    # sweep A has face complete and comic still running; sweep B has comic complete
    running = [r for r in IMAGES["comic"] if r["iteration"] <= 300]
    write_job(tmp_path / "a" / "0", CELL, {"face": IMAGES["face"], "comic": running}, status={"comic": "running"})
    write_job(tmp_path / "b" / "0", CELL, {"comic": IMAGES["comic"]})
    report = build_report(load_local([str(tmp_path / "a"), str(tmp_path / "b")]))
    cell = report.cell("bp", "uniform", 0.3)
    assert cell.flags == [] and sorted(cell.used) == ["comic", "face"]
    assert cell.peak["iteration"] == expected_peak(list(IMAGES.values()))["iteration"]
    # only sweep A: comic is running, so the cell is flagged and averaged over face alone
    report = build_report(load_local([str(tmp_path / "a")]))
    cell = report.cell("bp", "uniform", 0.3)
    assert cell.used == ["face"] and {"fewer_images", "running"} <= set(cell.flags)
    assert cell.peak["iteration"] == 200


def test_an_explicit_image_list_sets_what_is_expected(tmp_path):
    write_job(tmp_path / "a", CELL, IMAGES)
    jobs = load_local([str(tmp_path)])
    cell = build_report(jobs, images=["face", "lenna"]).cell("bp", "uniform", 0.3)
    assert cell.used == ["face"] and cell.expected == ["face", "lenna"] and cell.flags == ["fewer_images"]
    assert cell.peak["psnr"] == pytest.approx(max(r["psnr"] for r in IMAGES["face"]))  # comic left out
    report = build_report(jobs, images=["face", "lenna"])
    assert [(i.kind, i.image) for i in report.issues if i.cell == cell.cell] == [("ignored", "comic"),
                                                                                ("fewer_images", "lenna")]


def test_different_config_hash_is_a_conflict_not_a_mix(tmp_path):
    write_job(tmp_path / "a", CELL, {"face": IMAGES["face"]}, config_hash="h1")
    write_job(tmp_path / "b", CELL, {"comic": IMAGES["comic"]}, config_hash="h2")
    report = build_report(load_local([str(tmp_path / "*")]))  # a glob
    cell = report.cell("bp", "uniform", 0.3)
    assert cell.status == "conflict" and cell.peak is None
    assert set(cell.conflict) == {"h1", "h2"}
    assert any(i.kind == "conflict" for i in report.issues)


def test_corrupt_records_are_reported_not_averaged(tmp_path):
    write_job(tmp_path / "a", CELL, IMAGES)
    (tmp_path / "a" / "metrics.csv").write_text("image,iteration,psnr\nface,0\n")  # truncated
    other = dict(CELL, loss="ls")
    write_job(tmp_path / "b", other, IMAGES)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "summary.json").write_text('{"schema": 1, "run": ')  # cut mid-write
    report = build_report(load_local([str(tmp_path)]))
    by_loss = {loss: report.cell(loss, "uniform", 0.3) for loss in ("bp", "ls")}
    assert by_loss["bp"].used == [] and "corrupt" in by_loss["bp"].flags and by_loss["bp"].peak is None
    assert by_loss["ls"].flags == []
    assert sum(i.kind == "corrupt" for i in report.issues) == 3  # two images of a, and job c


def test_failed_image_is_left_out_and_listed(tmp_path):
    failing = [dict(r, psnr=math.nan) if r["iteration"] >= 500 else r for r in IMAGES["comic"]][:6]
    write_job(tmp_path / "a", CELL, {"face": IMAGES["face"], "comic": failing}, status={"comic": "failed"})
    report = build_report(load_local([str(tmp_path)]))
    cell = report.cell("bp", "uniform", 0.3)
    assert cell.used == ["face"] and cell.flags == ["fewer_images", "failed"]
    assert cell.peak["psnr"] == pytest.approx(max(r["psnr"] for r in IMAGES["face"]))
    (issue,) = [i for i in report.issues if i.kind == "failed"]
    assert issue.image == "comic" and "at iteration 500" in issue.detail and "non-finite" in issue.detail
    row = report.per_image.query("image == 'comic'").iloc[0]
    assert row.status == "failed" and not row.in_mean


# /work/shared/PROTOCOL.md, "The paper's Table I (PSNR dB / SSIM, Set14 average)", copied
# verbatim (header and the four rows) so the check runs from a clone without ../shared.
PROTOCOL_TABLE1 = """
| loss | U 0.3 | U 2 | U 4 | R 0.3 | R 2 | R 4 | G 0.3 | G 2 | G 4 |
|---|---|---|---|---|---|---|---|---|---|
| LS | 26.31/0.83 | 26.84/0.84 | 26.45/0.83 | 28.09/0.88 | 28.10/0.88 | 28.49/0.87 | 27.42/0.87 | 27.22/0.86 | 27.66/0.86 |
| LS-TV | 26.36/0.83 | 26.95/0.84 | 26.80/0.84 | 28.41/0.88 | 28.44/0.88 | 28.30/0.88 | 27.74/0.86 | 27.31/0.85 | 27.62/0.86 |
| BP | 29.78/0.91 | 26.57/0.84 | 25.41/0.80 | 32.50/0.95 | 28.80/0.89 | 27.44/0.86 | 29.73/0.91 | 27.13/0.85 | 26.05/0.82 |
| BP-TV | 29.51/0.90 | 28.25/0.88 | 27.31/0.86 | 31.75/0.93 | 30.10/0.91 | 28.94/0.89 | 29.65/0.91 | 28.94/0.90 | 28.24/0.88 |
"""


def protocol_table1() -> dict[tuple[str, str, float], tuple[float, float]]:
    """The markdown table above, parsed from its own header: (loss, kernel, var) -> (PSNR, SSIM)."""
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in PROTOCOL_TABLE1.strip().splitlines()]
    header, body = rows[0], rows[2:]
    kernel_of = {"U": "uniform", "R": "radial", "G": "gaussian"}
    columns = [(kernel_of[h.split()[0]], float(h.split()[1])) for h in header[1:]]
    table = {}
    for label, *cells in body:
        loss = label.lower().replace("-", "_")  # LS-TV -> ls_tv, the config names
        for (kernel, var), cell in zip(columns, cells, strict=True):
            p, q = cell.split("/")
            table[(loss, kernel, var)] = (float(p), float(q))
    return table


def test_paper_table_transcription():
    from bpdip.paper import LOSSES, table1

    want = protocol_table1()
    assert len(want) == 36 and set(TABLE1) == set(want)
    for (loss, kernel, var), (p, q) in want.items():
        assert TABLE1[(loss, kernel, var)] == (p, q), (loss, kernel, var)
        # the lookup used by reports, with the variance as JSON may hold it (2 or 2.0)
        assert table1(loss, kernel, int(var) if var.is_integer() else var) == (p, q)
    assert table1("bp", "file", 0.3) is None and LOSSES == ("ls", "ls_tv", "bp", "bp_tv")


def test_missing_image_marks_the_cell_in_markdown_csv_latex(tmp_path):
    write_job(tmp_path / "bp", CELL, IMAGES)
    write_job(tmp_path / "ls", dict(CELL, loss="ls"), {"face": IMAGES["face"]})  # comic never ran
    report = build_report(load_local([str(tmp_path)]))  # the paper's 36-cell grid
    out = tmp_path / "report"
    write_report(report, out, figure=False)
    marker = FLAGS["fewer_images"][0]

    with open(out / "table1.csv", newline="") as fh:
        rows = {(r["loss"], r["kernel"], r["noise_var"]): r for r in csv.DictReader(fh)}
    assert len(rows) == 36
    ls, bp = rows[("ls", "uniform", "0.3")], rows[("bp", "uniform", "0.3")]
    assert (ls["status"], ls["n_images"], ls["n_expected"], ls["missing_images"]) == ("incomplete", "1", "2", "comic")
    assert "fewer_images" in ls["flags"] and marker in ls["markers"]
    assert (bp["status"], bp["n_images"], bp["flags"]) == ("complete", "2", "")
    assert rows[("bp_tv", "radial", "4.0")]["status"] == "missing"
    with open(out / "issues.csv", newline="") as fh:
        issues = list(csv.DictReader(fh))
    assert any(i["kind"] == "fewer_images" and i["loss"] == "ls" and i["image"] == "comic" for i in issues)

    md = (out / "report.md").read_text()
    first = lambda row: row.split(" | ")[1]  # noqa: E731 (the Uniform sqrt(0.3) column)
    # Table I: the value, then the escaped marker (not emphasis); n is in the iterations table
    table = md.split("## Table I")[1].split("## The paper's")[0]
    ls_row = next(line for line in table.splitlines() if line.startswith("| LS |"))
    bp_row = next(line for line in table.splitlines() if line.startswith("| BP |"))
    ls_peak = report.cell("ls", "uniform", 0.3).peak
    assert first(ls_row) == f"{ls_peak['psnr']:.2f} / {ls_peak['ssim_dr2']:.3f} \\{marker}"
    bp_peak = report.cell("bp", "uniform", 0.3).peak  # the column's best: bold, no marker
    assert first(bp_row) == f"**{bp_peak['psnr']:.2f} / {bp_peak['ssim_dr2']:.3f}**"
    table = md.split("## Iterations, SSIM₁ and images")[1].split("## Seeds")[0]
    ls_row = next(line for line in table.splitlines() if line.startswith("| LS |"))
    bp_row = next(line for line in table.splitlines() if line.startswith("| BP |"))
    assert "\\" + marker in first(ls_row) and "n=1/2" in first(ls_row)
    assert "\\" + marker not in first(bp_row) and "n=2/2" in first(bp_row)
    tail = md.split("## Incomplete data")[1]
    assert "ls / uniform / var 0.3 image `comic`" in tail and "missing settings (34)" in tail

    tex = (out / "table1.tex").read_text()
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\cmidrule" in tex
    ls_line = next(line for line in tex.splitlines() if line.startswith("LS & "))  # the first table: ours
    bp_line = next(line for line in tex.splitlines() if line.startswith("BP & "))
    assert ls_line.split(" & ")[1].endswith("$^{*}$") and not bp_line.split(" & ")[1].endswith("$^{*}$")
    assert "comic" in tex.split("\\end{tabular}")[1]  # listed in the notes under the table
    for name in ("table1.tex", "table1_final.tex", "per_image.tex", "seeds.tex", "report.tex"):
        assert (out / name).read_text().isascii(), name  # pdflatex-safe: markers as math symbols


def test_figure1_has_nine_panels_and_a_png(tmp_path):
    write_job(tmp_path / "bp", CELL, IMAGES)
    write_job(tmp_path / "ls", dict(CELL, loss="ls", kernel="radial"), IMAGES)
    report = build_report(load_local([str(tmp_path)]))
    fig = figure1(report.cells)
    assert len(fig.axes) == 9
    panel = fig.axes[0]  # uniform, sqrt(0.3)
    lines = [ln for ln in panel.get_lines() if len(ln.get_xdata()) > 1]
    assert len(lines) == 1
    np.testing.assert_allclose(lines[0].get_ydata(), np.mean([[r["psnr"] for r in c] for c in IMAGES.values()], 0))
    labels = [t.get_text() for t in panel.get_legend().get_texts()]
    assert any(f"{report.cell('bp', 'uniform', 0.3).peak['psnr']:.2f} dB @400" in t for t in labels)  # BP row, 1st cell
    paths = write_report(report, tmp_path / "out")
    png = tmp_path / "out" / "fig1.png"
    assert png in paths and png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "fig1.pdf").read_bytes()[:4] == b"%PDF"


def test_cli_reports_bad_input_in_one_line(tmp_path):
    from bpdip.report.cli import main

    from bpdip.data import SET14
    from bpdip.report.cli import image_list

    assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert main([str(tmp_path / "nothing-*"), "--out", str(tmp_path / "o")]) == 2  # a glob matching nothing
    assert not (tmp_path / "o").exists()
    assert image_list("set14") == list(SET14) and len(SET14) == 14
    assert image_list(" face, comic ") == ["face", "comic"]
    with pytest.raises(ValueError, match="--images is empty"):
        image_list(" , ")


def test_round_trip_from_a_real_multirun(tmp_path):
    """Records of a tiny real sweep (the runner's smoke preset: two 40x40 crops, slim net,
    6 iterations) through the CLI: the tables hold exactly the summaries' numbers."""
    sweep, store, out = tmp_path / "multirun", tmp_path / "store", tmp_path / "report"
    cmd = [sys.executable, str(REPO / "run.py"), "-m", "experiment=smoke", "loss=ls,bp", "threads=1",
           f"hydra.sweep.dir={sweep}", f"results_root={store}"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    from bpdip.records import read_json, read_metrics_csv
    from bpdip.report.cli import main

    # the sweep and the results store hold the same images twice: they merge, not conflict
    assert main([str(tmp_path), "--out", str(out)]) == 0
    with open(out / "table1.csv", newline="") as fh:
        table = {(r["loss"], r["kernel"], float(r["noise_var"])): r for r in csv.DictReader(fh)}
    with open(out / "table1_final.csv", newline="") as fh:
        final = {(r["loss"], r["kernel"], float(r["noise_var"])): r for r in csv.DictReader(fh)}
    with open(out / "per_image.csv", newline="") as fh:
        per_image = {(r["loss"], r["image"]): r for r in csv.DictReader(fh)}
    summaries = sorted(sweep.glob("*/summary.json"))
    assert len(summaries) == 2
    for path in summaries:
        summary = read_json(path)
        c = summary["run"]["cell"]
        key = (c["loss"], c["kernel"], float(c["noise_var"]))
        images = summary["images"]
        assert set(images) == {"face", "comic"}
        row = table[key]
        assert (row["status"], row["n_images"], row["flags"]) == ("complete", "2", "")
        assert row["config_hash"] == summary["run"]["config_hash"]
        # final table: the mean of the summaries' final values
        for k in ("final_psnr", "final_ssim_dr2", "final_ssim"):
            assert float(final[key][k]) == pytest.approx(np.mean([e[k] for e in images.values()]), abs=1e-12)
        # per-image table: the summaries' own numbers, unchanged
        for name, e in images.items():
            r = per_image[(c["loss"], name)]
            for k in ("peak_psnr", "peak_ssim_dr2", "peak_ssim", "final_psnr", "final_ssim_dr2"):
                assert float(r[k]) == e[k]
            assert int(r["peak_iteration"]) == e["peak_iteration"] and r["in_mean"] == "True"
        # Table I: the peak of the mean of metrics.csv's curves, computed here directly
        rows = read_metrics_csv(path.with_name("metrics.csv"))
        its = sorted({r["iteration"] for r in rows})
        mean = [np.mean([r["psnr"] for r in rows if r["iteration"] == it]) for it in its]
        k = int(np.argmax(mean))
        assert float(row["peak_psnr"]) == pytest.approx(mean[k], abs=1e-12)
        assert int(row["peak_iteration"]) == its[k]
        at = [r for r in rows if r["iteration"] == its[k]]
        assert float(row["peak_ssim_dr2"]) == pytest.approx(np.mean([r["ssim_dr2"] for r in at]), abs=1e-12)
    assert (out / "fig1.png").stat().st_size > 10_000
    assert "None: every setting" not in (out / "report.md").read_text()  # 34 settings were not run


def test_departures_from_the_protocol_are_named():
    """The runner's default configs are the paper's protocol (no departure listed); the
    smoke preset's crop, iterations and slim net are each listed."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from bpdip.report.protocol import deviations
    from bpdip.report.sources import Cell

    def config(*overrides):
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return OmegaConf.to_container(compose("config", overrides=list(overrides)), resolve=True)

    for loss in ("ls", "ls_tv", "bp", "bp_tv"):
        for kernel in ("uniform", "radial"):
            cfg = config(f"loss={loss}", f"kernel={kernel}")
            assert deviations(cfg, Cell(kernel, 0.3, loss), 14) == [], (loss, kernel)
    smoke = deviations(config("experiment=smoke", "loss=ls_tv"), Cell("uniform", 0.3, "ls_tv"), 2)
    assert smoke[0].startswith("2 image(s)")
    assert any("crop 40" in d for d in smoke) and any("6 iterations (paper: 10000)" in d for d in smoke)
    assert any("channels_down [8, 8, 8]" in d for d in smoke)
    wrong_tv = deviations({"loss": {"tv_weight": 1e-4}}, Cell("radial", 2.0, "ls_tv"), 14)
    assert wrong_tv == ["TV weight 0.0001 (paper: 1e-05)"]
