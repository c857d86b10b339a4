"""Reports over several seeds: per-seed Table I values, mean ± s.d., the paired
t-interval of each column's two best losses, the paper-like layout and its LaTeX."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from bpdip.paper import TABLE1
from bpdip.records import curve_rows, write_json, write_metrics_csv
from bpdip.report import build_report, load_local, write_report
from bpdip.report.build import markdown as build_markdown
from bpdip.report.cells import FLAGS

REPO = Path(__file__).resolve().parents[1]
ITERS = np.arange(0, 1000, 100)
IMAGES = ("comic", "face")


def curve(level: float, peak_at: float) -> list[dict]:
    """A known PSNR curve: ``level`` + a 5 dB bump at ``peak_at``; SSIMs tied to it."""
    rows = []
    for it in ITERS:
        p = level + 5.0 * math.exp(-(((it - peak_at) / 400.0) ** 2))
        rows.append({"iteration": int(it), "psnr": p, "ssim": p / 40.0, "ssim_dr2": p / 35.0, "loss": 1.0,
                     "seconds": 0.01 * it})
    return rows


def write_job(root: Path, loss: str, seed, images: dict[str, list[dict]], config_hash: str | None = None,
              protocol_hash: str | None = "p-uniform-0.3", kernel="uniform", var=0.3) -> Path:
    """One job directory as the runner writes it, with ``run.seed`` and (unless None)
    ``run.protocol_hash``; the config hash is per seed, as the runner's (seed is hashed)."""
    root.mkdir(parents=True, exist_ok=True)
    rows, entries = [], {}
    for name, c in images.items():
        rows += curve_rows(name, c)
        best = max(c, key=lambda r: r["psnr"])
        entries[name] = {"status": "complete", "peak_psnr": best["psnr"], "peak_iteration": best["iteration"],
                         "peak_ssim": best["ssim"], "peak_ssim_dr2": best["ssim_dr2"], "final_psnr": c[-1]["psnr"],
                         "final_ssim": c[-1]["ssim"], "final_ssim_dr2": c[-1]["ssim_dr2"], "runtime_s": 1.0,
                         "iterations": 1000, "error": None}
    run = {"cell": {"kernel": kernel, "noise_var": var, "loss": loss},
           "config_hash": config_hash or f"h-{loss}-{kernel}-{var}-s{seed}", "git_commit": "abc1234",
           "device": "cpu", "torch_version": "2.13.0", "iterations": 1000, "log_every": 100, "status": "complete",
           "seed": seed}
    if protocol_hash is not None:
        run["protocol_hash"] = f"{protocol_hash}-{loss}"
    write_metrics_csv(root / "metrics.csv", rows)
    write_json(root / "summary.json", {"schema": 1, "run": run, "images": entries})
    return root


def levels(base: float, seed_offsets, image_offsets) -> dict:
    """(seed, image) -> the curve's level: base + seed offset + image offset."""
    return {(s, im): base + so + io for s, so in enumerate(seed_offsets) for im, io in zip(IMAGES, image_offsets)}


def write_loss(root: Path, loss: str, level: dict, peak_at: dict, seeds=(0, 1, 2), skip=()):
    for s in seeds:
        images = {im: curve(level[(s, im)], peak_at[im]) for im in IMAGES if (s, im) not in skip}
        write_job(root / f"{loss}-s{s}", loss, s, images)


PEAKS = {"comic": 300.0, "face": 500.0}  # each image's own best iteration


def hand_seed_peak(level: dict, seed: int, images=IMAGES) -> tuple[float, int, dict]:
    """Independently: the seed's mean curve, its argmax, and each image's PSNR there."""
    curves = {im: [r["psnr"] for r in curve(level[(seed, im)], PEAKS[im])] for im in images}
    mean = np.mean(list(curves.values()), axis=0)
    k = int(np.argmax(mean))
    return float(mean[k]), int(ITERS[k]), {im: curves[im][k] for im in images}


def hand_interval(d: list[float]) -> tuple[float, float, float]:
    """mean ± t_{0.975,n-1} s/√n, with s the sample standard deviation (n - 1)."""
    n = len(d)
    mean = sum(d) / n
    s = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    t = {4: 2.776445, 5: 2.570582}[n - 1]  # t_{0.975, n-1} from a printed table
    return mean, mean - t * s / math.sqrt(n), mean + t * s / math.sqrt(n)


def test_seed_mean_std_and_paired_interval_match_hand_computation(tmp_path):
    a_level = levels(24.0, [0.0, 0.4, -0.3], [0.0, 2.0])  # BP-TV: clearly the best
    b_level = levels(22.0, [0.1, 0.0, 0.5], [0.3, 2.2])  # BP
    write_loss(tmp_path, "bp_tv", a_level, PEAKS)
    write_loss(tmp_path, "bp", b_level, PEAKS)
    report = build_report(load_local([str(tmp_path)]))
    a, b = report.cell("bp_tv", "uniform", 0.3), report.cell("bp", "uniform", 0.3)
    assert a.flags == [] and b.flags == [] and a.n_seeds == 3 and list(a.seeds) == [0, 1, 2]

    peaks = [hand_seed_peak(a_level, s)[0] for s in range(3)]
    mean = sum(peaks) / 3
    std = math.sqrt(sum((p - mean) ** 2 for p in peaks) / 2)  # sample s.d.: n - 1 = 2
    assert a.peak["psnr"] == pytest.approx(mean, abs=1e-12) and a.psnr_std == pytest.approx(std, abs=1e-12)
    assert [r.peak["psnr"] for r in a.seeds.values()] == pytest.approx(peaks, abs=1e-12)
    row = report.peak.query("loss == 'bp_tv' and kernel == 'uniform' and noise_var == 0.3").iloc[0]
    assert row.n_seeds == 3 and row.peak_psnr_std == pytest.approx(std) and row.seeds == "0;1;2"
    assert row.peak_psnr == pytest.approx(mean)
    assert row.diff_psnr == pytest.approx(mean - TABLE1[("bp_tv", "uniform", 0.3)][0])

    # d(i, s) = A on image i, seed s at A's seed-s peak iteration - the same for B
    d = []
    for s in range(3):
        _, _, at_a = hand_seed_peak(a_level, s)
        _, _, at_b = hand_seed_peak(b_level, s)
        d += [at_a[im] - at_b[im] for im in IMAGES]
    hand_mean, lo, hi = hand_interval(d)
    per_seed_diff = [hand_seed_peak(a_level, s)[0] - hand_seed_peak(b_level, s)[0] for s in range(3)]
    assert hand_mean == pytest.approx(sum(per_seed_diff) / 3, abs=1e-12)  # every seed has every image
    col = report.comparisons.query("kernel == 'uniform' and noise_var == 0.3").iloc[0]
    assert (col.best, col.second, col.n_pairs, col.n_possible) == ("bp_tv", "bp", 6, 6)
    assert col.mean_diff == pytest.approx(hand_mean, abs=1e-12)
    assert col.ci_low == pytest.approx(lo, abs=1e-5) and col.ci_high == pytest.approx(hi, abs=1e-5)
    assert col.p_value == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-9)  # = the paired t-test
    assert lo > 0 and col.verdict == "significant" and col.winner == "bp_tv"
    assert col.paper_winner == "bp" and col.agrees == "no"  # the paper's best at uniform 0.3 is BP
    # columns with no records
    assert set(report.comparisons.query("kernel != 'uniform' or noise_var != 0.3").verdict) == {"not enough data"}

    out = tmp_path / "out"
    write_report(report, out, figure=False)
    md = (out / "report.md").read_text()
    table = md.split("## Table I")[1].split("## The paper's")[0]
    bp_tv = next(line for line in table.splitlines() if line.startswith("| BP-TV |"))
    assert bp_tv.split(" | ")[1] == f"**{mean:.2f} ± {std:.2f} / {a.peak['ssim_dr2']:.3f}**"
    winners = md.split("## Column winners")[1].split("## Final")[0]
    line = next(ln for ln in winners.splitlines() if ln.startswith("| Uniform σ=√0.3 |"))
    assert f"{hand_mean:+.2f} [{lo:+.2f}, {hi:+.2f}]" in line and "BP-TV, significant" in line
    assert "| BP (+0.27 over the next) | no |" in line
    with open(out / "seeds.csv", newline="") as fh:
        seeds = [r for r in csv.DictReader(fh) if r["loss"] == "bp_tv"]
    assert [float(r["peak_psnr"]) for r in seeds] == pytest.approx(peaks, abs=1e-12)


def test_a_tie_whose_interval_crosses_zero_is_reported_tied(tmp_path):
    # the two losses swap places from pair to pair: mean difference small, interval across 0
    a_level = levels(24.0, [0.0, 0.5, 0.0], [0.0, 2.0])
    b_level = {k: v + dv for (k, v), dv in zip(a_level.items(), [-0.6, 0.5, -0.4, 0.3, -0.5, 0.6])}
    write_loss(tmp_path, "ls", a_level, PEAKS)
    write_loss(tmp_path, "ls_tv", b_level, PEAKS)
    report = build_report(load_local([str(tmp_path)]))
    col = report.comparisons.query("kernel == 'uniform' and noise_var == 0.3").iloc[0]
    assert col.ci_low < 0 < col.ci_high and col.verdict == "tied" and not isinstance(col.winner, str)
    assert col.agrees == "tie: paper's winner is not one of the two"  # the paper's is BP
    out = tmp_path / "out"
    write_report(report, out, figure=False)
    winners = (out / "report.md").read_text().split("## Column winners")[1]
    line = next(ln for ln in winners.splitlines() if ln.startswith("| Uniform σ=√0.3 |"))
    assert "tied (" in line and "significant" not in line


def test_comparison_with_fewer_than_two_pairs_is_not_enough_data(tmp_path):
    write_job(tmp_path / "a", "bp", 0, {"face": curve(25.0, 300)})
    write_job(tmp_path / "b", "bp_tv", 0, {"face": curve(24.0, 300)})
    report = build_report(load_local([str(tmp_path)]))
    col = report.comparisons.query("kernel == 'uniform' and noise_var == 0.3").iloc[0]
    assert col.n_pairs == 1 and col.verdict == "not enough data" and math.isnan(col.ci_low)
    assert col.mean_diff == pytest.approx(1.0)


def test_table1_is_one_line_per_loss_with_the_column_maximum_in_bold(tmp_path):
    rng = np.random.default_rng(0)
    for loss in ("ls", "ls_tv", "bp", "bp_tv"):
        for kernel in ("uniform", "radial"):
            for s in (0, 1):
                images = {im: curve(20 + rng.uniform(0, 8), PEAKS[im]) for im in IMAGES}
                write_job(tmp_path / f"{loss}-{kernel}-{s}", loss, s, images, kernel=kernel,
                          protocol_hash=f"p-{kernel}")
    report = build_report(load_local([str(tmp_path)]))
    out = tmp_path / "out"
    write_report(report, out, figure=False)
    md = (out / "report.md").read_text()
    assert "<br>" not in md
    table = md.split("## Table I")[1].split("## The paper's")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("|  |")
            and not line.startswith("| :--")]
    assert [r.split(" | ")[0] for r in rows] == ["| LS", "| LS-TV", "| BP", "| BP-TV"]  # exactly one line per loss
    cells = [[c.strip() for c in r.strip("|").split("|")][1:] for r in rows]
    for j, (kernel, var) in enumerate([(k, v) for k in ("uniform", "radial", "gaussian") for v in (0.3, 2.0, 4.0)]):
        column = report.peak.query(f"kernel == '{kernel}' and noise_var == {var}").set_index("loss")
        bold = [i for i in range(4) if cells[i][j].startswith("**")]
        if kernel == "gaussian" or var != 0.3:
            assert bold == [] and all(c[j].startswith("missing") for c in cells)
            continue
        best = column["peak_psnr"].idxmax()
        assert bold == [("ls", "ls_tv", "bp", "bp_tv").index(best)]
        assert cells[bold[0]][j].startswith(f"**{column.loc[best, 'peak_psnr']:.2f} ± ")
    # the paper's table bolds the paper's column best (BP at uniform sqrt(0.3))
    paper = md.split("## The paper's Table I")[1].split("## Differences")[0]
    assert "| BP | **29.78 / 0.91** |" in paper


def test_mixed_seeds_and_a_missing_image_are_marked_not_averaged_silently(tmp_path):
    bp = levels(24.0, [0.0, 0.4, -0.3], [0.0, 2.0])
    bp_tv = levels(23.0, [0.2, 0.0, 0.1], [0.0, 2.0])
    ls = levels(21.0, [0.0, 0.0, 0.0], [0.0, 2.0])
    write_loss(tmp_path, "bp", bp, PEAKS)  # 3 seeds, complete
    write_loss(tmp_path, "bp_tv", bp_tv, PEAKS, skip={(1, "comic")})  # seed 1 lacks comic
    write_loss(tmp_path, "ls", ls, PEAKS, seeds=(0,))  # one seed only
    report = build_report(load_local([str(tmp_path)]))
    c_bp, c_tv, c_ls = (report.cell(loss, "uniform", 0.3) for loss in ("bp", "bp_tv", "ls"))
    assert c_bp.flags == [] and c_bp.n_seeds == 3
    assert c_ls.flags == ["fewer_seeds"] and c_ls.n_seeds == 1 and c_ls.psnr_std is None
    assert c_ls.peak == c_ls.seeds[0].peak  # one seed: exactly that seed's value
    assert c_tv.flags == ["fewer_images"] and c_tv.seeds[1].used == ["face"] and c_tv.used == ["face"]
    # the seed-1 value is the face-only peak, averaged with the complete seeds, and marked
    want = [hand_seed_peak(bp_tv, 0)[0], hand_seed_peak(bp_tv, 1, images=("face",))[0], hand_seed_peak(bp_tv, 2)[0]]
    assert c_tv.peak["psnr"] == pytest.approx(np.mean(want), abs=1e-12)

    out = tmp_path / "out"
    write_report(report, out, figure=False)
    md = (out / "report.md").read_text()
    table = md.split("## Table I")[1].split("## The paper's")[0]
    first = {line.split(" | ")[0][2:]: line.split(" | ")[1] for line in table.splitlines()
             if line.startswith("| ") and " | " in line}
    seed_mark, image_mark = FLAGS["fewer_seeds"][0], FLAGS["fewer_images"][0]
    assert first["LS"] == f"{c_ls.peak['psnr']:.2f} / {c_ls.peak['ssim_dr2']:.3f} {seed_mark}"  # no ±: one seed
    tv_text = f"{np.mean(want):.2f} ± {np.std(want, ddof=1):.2f} / {c_tv.peak['ssim_dr2']:.3f}"
    assert first["BP-TV"] == f"{tv_text} \\{image_mark}"  # ± over 3 seeds, one of them on 1 image: marked
    assert first["BP"].startswith("**") and seed_mark not in first["BP"] and "\\*" not in first["BP"]
    seeds = md.split("## Seeds")[1].split("## Column winners")[0]
    ls_row = next(ln for ln in seeds.splitlines() if ln.startswith("| ls / uniform / var 0.3 |"))
    assert "| unknown (1 seed) | 1 of 3 |" in ls_row
    tv_row = next(ln for ln in seeds.splitlines() if ln.startswith("| bp_tv / uniform / var 0.3 |"))
    assert f"1: {want[1]:.2f} (1/2 images)" in tv_row
    issues = md.split("## Incomplete data")[1]
    assert "bp_tv / uniform / var 0.3 seed 1 image `comic`: no record of this image" in issues
    assert "ls / uniform / var 0.3: no value for seed(s) 1, 2" in issues
    iterations = md.split("## Iterations, SSIM₁ and images")[1].split("## Seeds")[0]
    tv_line = next(ln for ln in iterations.splitlines() if ln.startswith("| BP-TV |"))
    assert "n=2,1,2/2" in tv_line.split(" | ")[1]
    # the comparison BP vs BP-TV pairs only what both have, and says so
    col = report.comparisons.query("kernel == 'uniform' and noise_var == 0.3").iloc[0]
    assert (col.best, col.second, col.n_pairs, col.n_possible) == ("bp", "bp_tv", 5, 6)
    assert "5 of 6 (image, seed) pairs" in col.note and image_mark in col.note
    # per image: comic of BP-TV has two seeds in the mean, its spread over those two
    spread = report.image_spread.query("loss == 'bp_tv' and image == 'comic'").iloc[0]
    comic = [max(r["psnr"] for r in curve(bp_tv[(s, "comic")], PEAKS["comic"])) for s in (0, 2)]
    assert (spread.n_seeds, spread.n_seeds_in_mean) == (3, 2)
    assert spread.peak_psnr_std == pytest.approx(np.std(comic, ddof=1), abs=1e-12)
    assert spread.statuses == "complete:2;absent:1"
    ls_face = report.image_spread.query("loss == 'ls' and image == 'face'").iloc[0]
    assert math.isnan(ls_face.peak_psnr_std)
    per_image = md.split("## Per image")[1]
    assert "| LS | uniform | 0.3 | face | complete | yes |" in per_image and "| unknown |" in per_image


def test_which_records_are_seeds_of_one_setting_and_which_conflict(tmp_path):
    face = {"face": curve(25.0, 300)}
    # same protocol, two seeds (their config hashes differ, as the seed is hashed)
    write_job(tmp_path / "ok" / "s0", "bp", 0, face)
    write_job(tmp_path / "ok" / "s1", "bp", 1, face)
    report = build_report(load_local([str(tmp_path / "ok")]))
    c = report.cell("bp", "uniform", 0.3)
    assert c.status == "complete" and list(c.seeds) == [0, 1] and c.protocol_hash == "p-uniform-0.3-bp"
    assert not [i for i in report.issues if i.kind in ("conflict", "unchecked")]
    # another protocol (e.g. another learning rate) under another seed: a conflict
    write_job(tmp_path / "bad" / "s0", "bp", 0, face)
    write_job(tmp_path / "bad" / "s1", "bp", 1, face, protocol_hash="p-other")
    report = build_report(load_local([str(tmp_path / "bad")]))
    c = report.cell("bp", "uniform", 0.3)
    assert c.status == "conflict" and c.peak is None and set(c.conflict) == {"p-uniform-0.3-bp", "p-other-bp"}
    assert any(i.kind == "conflict" and "protocol_hash" in i.detail for i in report.issues)
    # older records without protocol_hash: different seeds are seeds of the setting (noted)...
    write_job(tmp_path / "old" / "s0", "bp", 0, face, protocol_hash=None)
    write_job(tmp_path / "old" / "s1", "bp", 1, face, protocol_hash=None)
    report = build_report(load_local([str(tmp_path / "old")]))
    c = report.cell("bp", "uniform", 0.3)
    assert c.status == "complete" and c.n_seeds == 2
    (note,) = [i for i in report.issues if i.kind == "unchecked"]
    assert "seed(s) 0, 1 have no protocol_hash" in note.detail
    # ...but two config hashes within one seed are a conflict
    write_job(tmp_path / "old2" / "a", "bp", 0, face, config_hash="h1", protocol_hash=None)
    write_job(tmp_path / "old2" / "b", "bp", 0, face, config_hash="h2", protocol_hash=None)
    report = build_report(load_local([str(tmp_path / "old2")]))
    c = report.cell("bp", "uniform", 0.3)
    assert c.status == "conflict" and set(c.conflict) == {"h1", "h2"}
    assert any("seed 0: config_hash h1" in i.detail for i in report.issues if i.kind == "conflict")


def test_heatmap_of_ours_minus_paper_is_centred_at_zero(tmp_path):
    from bpdip.report.figure import heatmap

    write_loss(tmp_path, "bp", levels(24.0, [0.0, 0.4, -0.3], [0.0, 2.0]), PEAKS)
    write_job(tmp_path / "ls", "ls", 0, {im: curve(28.0, PEAKS[im]) for im in IMAGES}, kernel="radial", var=2.0)
    report = build_report(load_local([str(tmp_path)]))
    fig = heatmap(report.cells)
    ax = fig.axes[0]
    (image,) = ax.get_images()
    assert image.norm.vcenter == 0 and image.norm.vmin == -image.norm.vmax
    assert image.get_cmap().name.startswith("RdBu")
    texts = [t.get_text() for t in ax.texts]
    bp = report.cell("bp", "uniform", 0.3)
    assert f"{bp.peak['psnr'] - TABLE1[('bp', 'uniform', 0.3)][0]:+.2f}\n±{bp.psnr_std:.2f}" in texts
    ls = report.cell("ls", "radial", 2.0)
    assert f"{ls.peak['psnr'] - TABLE1[('ls', 'radial', 2.0)][0]:+.2f}{ls.markers}" in texts
    assert texts.count("missing\n∅") == 34
    data = image.get_array()
    assert data[2, 0] == pytest.approx(bp.peak["psnr"] - TABLE1[("bp", "uniform", 0.3)][0])
    assert np.ma.count_masked(data) == 34
    import matplotlib.pyplot as plt

    plt.close(fig)
    from bpdip.report.build import FIGURES
    assert "table1_diff" in FIGURES
    png, pdf = FIGURES["table1_diff"](report, tmp_path / "table1_diff")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:4] == b"%PDF"


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not on PATH (apt-get install -y texlive-latex-base texlive-latex-recommended)")
def test_latex_tables_compile_with_pdflatex(tmp_path):
    bp = levels(24.0, [0.0, 0.4, -0.3], [0.0, 2.0])
    write_loss(tmp_path / "rec", "bp", bp, PEAKS)
    write_loss(tmp_path / "rec", "bp_tv", bp, PEAKS, skip={(1, "comic")})
    write_loss(tmp_path / "rec", "ls", bp, PEAKS, seeds=(0,))
    report = build_report(load_local([str(tmp_path / "rec")]))
    out = tmp_path / "out"
    write_report(report, out, figure=False)
    tex = (out / "table1.tex").read_text()
    assert "\\textbf{" in tex and "$\\pm$" in tex and "$^{\\circ}$" in tex and "<br>" not in tex
    for name in ("table1.tex", "table1_final.tex", "seeds.tex", "per_image.tex", "report.tex"):
        assert (out / name).read_text().isascii(), name
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=out,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (out / "report.pdf").read_bytes()[:4] == b"%PDF"


def test_a_real_two_seed_sweep_is_two_seeds_of_one_setting(tmp_path):
    """The runner's smoke preset swept over seed=0,1: separate store entries per seed, and
    the report (the sweep's own and one over sweep + store) has one setting with 2 seeds."""
    sweep, store = tmp_path / "multirun", tmp_path / "store"
    cmd = [sys.executable, str(REPO / "run.py"), "-m", "experiment=smoke", "seed=0,1", "threads=1",
           f"hydra.sweep.dir={sweep}", f"results_root={store}"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    entries = sorted(p.name for p in store.iterdir() if (p / "summary.json").is_file())
    assert len(entries) == 4 and len(set(entries)) == 4  # 2 images x 2 seeds
    from bpdip.records import read_json

    seeds = {read_json(store / e / "summary.json")["run"]["seed"] for e in entries}
    assert seeds == {0, 1}
    with open(sweep / "report" / "table1.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if (r["loss"], r["kernel"], r["noise_var"]) == ("bp", "uniform",
                                                                                                    "0.3"))
    assert (row["status"], row["n_seeds"], row["seeds"], row["n_images"]) == ("complete", "2", "0;1", "2")
    # the store's per-image entries and the sweep's jobs merge: still two seeds, same numbers
    report = build_report(load_local([str(sweep), str(store)]))
    c = report.cell("bp", "uniform", 0.3)
    assert c.status == "complete" and list(c.seeds) == [0, 1] and not any(i.kind == "conflict" for i in report.issues)
    for job in sorted(sweep.glob("*/summary.json")):
        summary = read_json(job)
        jobs = load_local([str(job)])
        alone = build_report(jobs).cell("bp", "uniform", 0.3)
        assert c.seeds[summary["run"]["seed"]].peak == alone.peak
    assert c.peak["psnr"] == pytest.approx(np.mean([r.peak["psnr"] for r in c.seeds.values()]))
    assert c.psnr_std == pytest.approx(np.std([r.peak["psnr"] for r in c.seeds.values()], ddof=1))


def test_the_papers_orderings_are_tested_in_the_papers_direction(tmp_path):
    """The paper puts BP above BP-TV at uniform 0.3 (+0.27 dB); records where BP-TV is
    clearly better make that ordering 'reversed', with the same interval as the winners'."""
    a_level = levels(24.0, [0.0, 0.4, -0.3], [0.0, 2.0])  # BP-TV
    b_level = levels(22.0, [0.1, 0.0, 0.5], [0.3, 2.2])  # BP
    write_loss(tmp_path, "bp_tv", a_level, PEAKS)
    write_loss(tmp_path, "bp", b_level, PEAKS)
    report = build_report(load_local([str(tmp_path)]))
    frame = report.orderings
    row = frame.query("kernel == 'uniform' and noise_var == 0.3 and a == 'bp' and b == 'bp_tv'").iloc[0]
    col = report.comparisons.query("kernel == 'uniform' and noise_var == 0.3").iloc[0]
    assert row.paper_diff == pytest.approx(29.78 - 29.51)
    assert row.ours_diff == pytest.approx(-col.mean_diff) and row.ci_high == pytest.approx(-col.ci_low)
    assert row.outcome == "reversed"
    # every pair of every column is listed once, in the paper's direction; no records: not enough data
    assert len(frame) == 9 * 6 and (frame.query("kernel != 'uniform' or noise_var != 0.3").outcome
                                    == "not enough data").all()
    md = build_markdown(report)
    line = next(ln for ln in md.split("## The paper's orderings")[1].splitlines() if ln.startswith("| BP vs BP-TV"))
    assert line.split(" | ")[1] == f"BP +0.27 / {row.ours_diff:+.2f} ✗"
