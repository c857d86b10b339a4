"""The report's output-stream parts (issue 20; bpdip/report/streams.py, stream_stopping.py):
Table I with the averaged and the clean output, the stopping table per stream, issue 20's
targets and Fig. 1's dashed curve, from hand-made records in the schema-3 format of the
session SPEC, every number worked out by hand below. Records without the streams give none
of these parts, and the committed CPU grid's report rebuilds unchanged."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bpdip.records import CURVE_COLUMNS_V2, CorruptRecord, read_metrics_csv, write_json
from bpdip.report import build_report, load_local, write_report
from bpdip.report.build import markdown

REPO = Path(__file__).resolve().parents[1]
ITERS = [0, 100, 200, 300]
RULES = ("oracle", "fixed", "wmv", "emv")


def _metrics(psnr: float) -> dict:
    return {"psnr": psnr, "ssim": psnr / 40, "ssim_dr2": psnr / 35}  # SSIMs tied to the PSNR


def write_stream_job(root: Path, loss: str, seed: int, images: dict, var=0.3, chosen=None, streams=True):
    """One job directory in the SPEC's schema-3 format, written by hand (not by the runner).

    ``images``: name -> stream -> PSNR at ITERS (``perturbed`` always; ``clean`` and
    ``average`` where given: metrics.csv gets their columns only then). ``chosen``: rule ->
    name -> iteration of the online rules (stopped 50 iterations later). Each stream's
    choice is the stream's value at the rule's iteration, its oracle its own best logged
    iteration, ``fixed`` the last one. ``streams=False``: the schema-2 record of today
    (no stream columns, no ``streams``)."""
    root.mkdir(parents=True, exist_ok=True)
    chosen = chosen or {}
    names = [s for s in ("clean", "average") if streams and any(s in v for v in images.values())]
    header = [*CURVE_COLUMNS_V2, *(f"{s}_{m}" for s in names for m in ("psnr", "ssim", "ssim_dr2"))]
    rows, entries = [], {}
    for name, curves in images.items():
        for k, it in enumerate(ITERS):
            row = {"image": name, "iteration": it, **_metrics(curves["perturbed"][k]), "loss": 1.0, "seconds": 0.1}
            for s in names:
                row.update({f"{s}_{m}": v for m, v in _metrics(curves[s][k]).items()})
            rows.append(row)

        def choice(stream, rule):
            values = curves[stream]
            it = {"oracle": ITERS[int(np.argmax(values))], "fixed": ITERS[-1]}.get(rule) or chosen[rule][name]
            return {"iteration": it, **_metrics(values[ITERS.index(it)])}

        rules = [r for r in RULES if r in ("oracle", "fixed") or r in chosen]
        own = {r: {**choice("perturbed", r), "stopped": r in chosen,
                   "stop_iteration": chosen[r][name] + 50 if r in chosen else None} for r in rules}
        p = curves["perturbed"]
        best = int(np.argmax(p))
        entry = {"status": "complete", "peak_psnr": p[best], "peak_iteration": ITERS[best],
                 "peak_ssim": p[best] / 40, "peak_ssim_dr2": p[best] / 35, "final_psnr": p[-1],
                 "final_ssim": p[-1] / 40, "final_ssim_dr2": p[-1] / 35, "runtime_s": 1.0, "iterations": 300,
                 "error": None, "stopping": own, "stopped_early": False}
        if streams:
            entry["restored_stream"] = "average"
            entry["streams"] = {}
            for s in ("perturbed", *names):
                v = curves[s]
                k = int(np.argmax(v))
                entry["streams"][s] = {"peak_psnr": v[k], "peak_iteration": ITERS[k], "peak_ssim": v[k] / 40,
                                       "peak_ssim_dr2": v[k] / 35, "final_psnr": v[-1], "final_ssim": v[-1] / 40,
                                       "final_ssim_dr2": v[-1] / 35, "stopping": {r: choice(s, r) for r in rules}}
        entries[name] = entry
    run = {"cell": {"kernel": "uniform", "noise_var": var, "loss": loss}, "config_hash": f"h-{loss}-{var}-s{seed}",
           "protocol_hash": f"p-{loss}-{var}", "seed": seed, "iterations": 300, "log_every": 100,
           "status": "complete"}
    if streams:
        run["output"] = {"restore": "average", "ema": 0.99}
    with open(root / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_json(root / "summary.json", {"schema": 3 if streams else 2, "run": run, "images": entries})


# BP / uniform / 0.3, seeds 0 and 1; LS / uniform / 0.3, seed 0 with the average only (no
# clean columns) and seed 1 a schema-2 record (no streams at all).
BP = {
    0: {"face": {"perturbed": [20, 24, 23, 22], "average": [20, 23, 25, 24], "clean": [20, 24.5, 24, 23]},
        "zebra": {"perturbed": [21, 23, 25, 22], "average": [21, 22, 25, 26], "clean": [21, 23.5, 25.5, 23]}},
    1: {"face": {"perturbed": [20.4, 24.4, 23.4, 22.4], "average": [20, 23, 25, 26], "clean": [20, 24.5, 24, 23]},
        "zebra": {"perturbed": [21, 23, 25, 22], "average": [21, 22, 25, 26.6], "clean": [21, 23.5, 25.5, 23]}},
}
LS = {
    0: {"face": {"perturbed": [20, 21, 22, 21.5], "average": [20, 21, 22.2, 22.4]},
        "zebra": {"perturbed": [22, 23, 23, 22], "average": [22, 22.6, 23.2, 23.4]}},
    1: {"face": {"perturbed": [20.2, 21.2, 22.2, 21.7]}, "zebra": {"perturbed": [22.2, 23.2, 23.2, 22.2]}},
}
BP_RULES = {"wmv": {"face": 100, "zebra": 200}, "emv": {"face": 300, "zebra": 300}}
LS_RULES = {"wmv": {"face": 200, "zebra": 300}, "emv": {"face": 300, "zebra": 300}}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("streams")
    for seed in (0, 1):
        write_stream_job(root / f"bp-s{seed}", "bp", seed, BP[seed], chosen=BP_RULES)
    write_stream_job(root / "ls-s0", "ls", 0, LS[0], chosen=LS_RULES)
    write_stream_job(root / "ls-s1", "ls", 1, LS[1], chosen=LS_RULES, streams=False)
    return build_report(load_local([str(root)]))


def test_table1_per_stream_by_hand(report):
    from bpdip.report.streams import stream_value, streams_table

    t = streams_table(report).set_index(["loss", "kernel", "noise_var", "stream"])
    # BP, perturbed: seed means [20.5, 23.5, 24, 22] and [20.7, 23.7, 24.2, 22.2]: peaks 24 and 24.2
    pert = t.loc[("bp", "uniform", 0.3, "perturbed")]
    assert pert.peak_psnr == pytest.approx(24.1) and pert.gain_psnr == 0
    # average: seed 0 [20.5, 22.5, 25, 25] peaks at 200 (the earlier of a tie), seed 1
    # [20.5, 22.5, 25, 26.3] at 300: 25.65 ± |26.3 - 25| / sqrt(2); gains 1.0 and 2.1
    avg = t.loc[("bp", "uniform", 0.3, "average")]
    assert avg.peak_psnr == pytest.approx(25.65) and avg.peak_psnr_std == pytest.approx(1.3 / math.sqrt(2))
    assert avg.peak_iterations == "200;300" and avg.n_seeds == 2 and avg.seeds == "0;1"
    assert avg.peak_ssim_dr2 == pytest.approx(25.65 / 35) and avg.peak_ssim == pytest.approx(25.65 / 40)
    assert avg.gain_psnr == pytest.approx(1.55) and avg.perturbed_psnr == pytest.approx(24.1)
    assert [float(g) for g in avg.gain_psnr_seeds.split(";")] == pytest.approx([1.0, 2.1])
    # clean: both seeds [20.5, 24, 24.75, 23]: 24.75 at 200, no spread; gains 0.75 and 0.55
    clean = t.loc[("bp", "uniform", 0.3, "clean")]
    assert clean.peak_psnr == pytest.approx(24.75) and clean.peak_psnr_std == 0
    assert clean.gain_psnr == pytest.approx(0.65)
    # LS: seed 0 only has the average: [21, 21.8, 22.7, 22.9] -> 22.9 at 300, gain over 22.5
    ls = t.loc[("ls", "uniform", 0.3, "average")]
    assert ls.peak_psnr == pytest.approx(22.9) and ls.n_seeds == 1 and ls.gain_psnr == pytest.approx(0.4)
    assert math.isnan(ls.peak_psnr_std) and ls.perturbed_psnr == pytest.approx((22.5 + 22.7) / 2)
    assert math.isnan(t.loc[("ls", "uniform", 0.3, "clean")].peak_psnr)
    assert t.loc[("bp_tv", "radial", 4.0, "average")].status == "missing"
    # the perturbed stream through the same code is Table I exactly
    for loss in ("bp", "ls"):
        c = report.cell(loss, "uniform", 0.3)
        v = stream_value(c, "perturbed")
        assert v.peak["psnr"] == c.peak["psnr"] and v.std == c.psnr_std and v.peak["ssim"] == c.peak["ssim"]


def test_markdown_sections_and_csv(report, tmp_path):
    write_report(report, tmp_path, figure=False)
    md = (tmp_path / "report.md").read_text()
    avg = md.split("## Table I with the averaged output")[1].split("## ")[0]
    row = lambda table, label: next(ln for ln in table.splitlines() if ln.startswith(f"| {label} |"))  # noqa: E731
    first = lambda line: line.split(" | ")[1]  # noqa: E731 (the Uniform sqrt(0.3) column)
    assert first(row(avg, "BP")) == "**25.65 ± 0.92 / 0.733** (+1.55)"
    assert first(row(avg, "LS")) == "22.90 / 0.654 (+0.40) [1 of 2 seeds]"
    assert "w = `output.ema` = 0.99" in avg and "mean over 2 settings" in avg and "1 of 2 at least +0.5 dB" in avg
    clean = md.split("## Table I with the clean output")[1].split("## ")[0]
    assert first(row(clean, "BP")) == "**24.75 ± 0.00 / 0.707** (+0.65)"
    assert first(row(clean, "LS")) == "no record of the stream"
    assert "Gain of the clean output over Table I, mean over 1 setting: **+0.65 dB**" in clean
    # Table I stays the perturbed stream
    table1 = md.split("## Table I: peak")[1].split("## ")[0]
    assert first(row(table1, "BP")) == "**24.10 ± 0.14 / 0.689**"
    frame = pd.read_csv(tmp_path / "table1_streams.csv")
    assert len(frame) == 36 * 3 and list(frame.stream[:3]) == ["perturbed", "average", "clean"]
    assert (tmp_path / "stopping_streams.csv").is_file() and (tmp_path / "table1_streams.tex").is_file()


def test_stopping_per_stream_and_the_targets_by_hand(report, tmp_path):
    from bpdip.report.stream_stopping import stream_stopping_table, targets

    frame = stream_stopping_table(report)
    t = frame.set_index(["loss", "stream", "rule"])
    # BP, average, wmv at face 100 / zebra 200: 23, 25, 23, 25 against the average's own
    # oracles 25 (@200), 26, 26, 26.6 (@300): gaps -2, -1, -3, -1.6
    wmv = t.loc[("bp", "average", "wmv")]
    assert wmv.n == 4 and wmv.mean_psnr == pytest.approx(24) and wmv.gap_db == pytest.approx(-1.9)
    assert wmv.within_05 == 0 and wmv.iteration == 150 and wmv.stopped == 1 and wmv.ran == pytest.approx(201)
    assert t.loc[("bp", "average", "oracle")].iteration == pytest.approx(275)
    assert t.loc[("bp", "perturbed", "wmv")].gap_db == pytest.approx(0)  # on the perturbed stream it is the oracle
    # emv at 300: 24, 26, 26, 26.6: gaps -1, 0, 0, 0
    assert t.loc[("bp", "average", "emv")].gap_db == pytest.approx(-0.25)
    # LS: only seed 0 has streams (n = 2); wmv face 22.2 vs 22.4, zebra 23.4 vs 23.4
    ls = t.loc[("ls", "average", "wmv")]
    assert ls.n == 2 and ls.gap_db == pytest.approx(-0.1) and ls.within_05 == 1
    assert ("ls", "clean", "wmv") not in t.index
    got = targets(report, frame)
    assert got["gain"]["mean"] == pytest.approx((1.55 + 0.4) / 2) and got["gain_met"]
    # per-image oracle, over the same images (LS: seed 0's): BP average (25 + 26 + 26 + 26.6) / 4 - perturbed
    # (24 + 25 + 24.4 + 25) / 4, LS (22.4 + 23.4) / 2 - (22 + 23) / 2
    bp_oracle = (25 + 26 + 26 + 26.6) / 4 - (24 + 25 + 24.4 + 25) / 4
    ls_oracle = (22.4 + 23.4) / 2 - (22 + 23) / 2
    assert t.loc[("ls", "perturbed", "oracle")].n == 2  # the schema-2 seed has no `streams`
    assert got["oracle_gain"] == pytest.approx((bp_oracle + ls_oracle) / 2) and got["oracle_n"] == 2
    assert got["rules"]["wmv"]["mean_gap_db"] == pytest.approx((-1.9 - 0.1) / 2) and not got["rules"]["wmv"]["met"]
    assert got["rules"]["emv"]["mean_gap_db"] == pytest.approx((-0.25 + 0) / 2) and got["rules"]["emv"]["met"]
    assert got["gap_met"]  # EMV suffices
    md = markdown(report)
    part = md.split("## Stopping rules on each output stream")[1]
    assert "| BP / Uniform / σ²=0.3 | average | 4 | 25.90 (0, 100%) @275 | 25.65 (-0.25, 75%) @300 | " \
           "24.00 (-1.90, 0%) @150 | 25.65 (-0.25, 75%) @300 |" in part
    assert "(a) the averaged output" in part and part.count("**met**") == 2 and "Why (b)" not in part


def test_missed_targets_say_why(tmp_path):
    """An averaged output below the perturbed one and a WMV that stops early: both targets
    missed, with the per-setting numbers that say why."""
    images = {"face": {"perturbed": [20, 24, 23, 22], "average": [20, 23, 23.5, 23.8]},
              "zebra": {"perturbed": [21, 23, 25, 22], "average": [21, 22, 23, 24]}}
    write_stream_job(tmp_path / "bp4", "bp", 0, images, var=4, chosen={"wmv": {"face": 100, "zebra": 200}})
    md = markdown(build_report(load_local([str(tmp_path)])))
    # average [20.5, 22.5, 23.25, 23.9] peaks at 23.9 against the perturbed 24: gain -0.1
    assert "**missed**, gain at Table I's oracle (the best common iteration) -0.10 dB over 1 setting" in md
    assert "Why (a) is missed" in md and "BP -0.10" in md
    # wmv: face 23 vs 23.8, zebra 23 vs 24 -> gap -0.90; mean choice 150 vs the oracle's 300
    assert "ES-WMV -0.90 dB over 1 setting" in md and "Why (b) is missed" in md
    assert "| BP / Uniform / σ²=4 | 2 | 23.90 | 300 | -0.90 | -150 | +0.00 | – | – | – |" in md


def test_records_without_streams_give_no_stream_parts(tmp_path):
    for seed in (0, 1):
        write_stream_job(tmp_path / "rec" / f"bp-s{seed}", "bp", seed, BP[seed], chosen=BP_RULES, streams=False)
    rep = build_report(load_local([str(tmp_path / "rec")]))
    out = tmp_path / "out"
    write_report(rep, out, figure=False)
    md = (out / "report.md").read_text()
    assert "## Table I: peak" in md and "## Stopping rules" in md
    assert "with the averaged output" not in md and "with the clean output" not in md and "each output stream" not in md
    for name in ("table1_streams.csv", "stopping_streams.csv", "table1_streams.tex", "stopping_streams.tex"):
        assert not (out / name).exists(), name
    assert "table1_streams" not in (out / "report.tex").read_text()


def test_committed_cpu_grid_report_rebuilds_unchanged(tmp_path, monkeypatch):
    """results/cpu_grid's report is what today's code builds from its records: every file
    byte for byte, report.md up to its 'built ... at code commit' line."""
    monkeypatch.chdir(REPO)  # the sources are written relative to the working directory, as the CLI's were
    committed = REPO / "results" / "cpu_grid"
    rep = build_report(load_local([str(committed / "records")]), inputs=["results/cpu_grid/records"])
    write_report(rep, tmp_path, figure=False)
    built = sorted(p.name for p in tmp_path.iterdir())
    for name in built:
        want, got = (committed / name).read_text(), (tmp_path / name).read_text()
        if name == "report.md":
            strip = lambda text: [ln for ln in text.splitlines() if not ln.startswith("- built ")]  # noqa: E731
            want, got = strip(want), strip(got)
        assert got == want, name
    # the committed grid has the output streams (schema 3): their tables are part of it
    assert "report.md" in built and "stopping.csv" in built and "table1_streams.csv" in built


def test_figure1_draws_the_average_dashed_in_the_same_colour(report):
    from bpdip.report.figure import figure1

    panel = figure1(report.cells).axes[0]  # uniform, sqrt(0.3)
    lines = [ln for ln in panel.get_lines() if len(ln.get_xdata()) > 1]
    solid = {ln.get_color(): ln for ln in lines if ln.get_linestyle() == "-"}
    dashed = {ln.get_color(): ln for ln in lines if ln.get_linestyle() == "--"}
    assert set(dashed) == set(solid) and len(dashed) == 2  # BP and LS
    from bpdip.report.figure import COLORS

    # BP: the mean of the seeds' average curves [20.5, 22.5, 25, 25] and [20.5, 22.5, 25, 26.3]
    np.testing.assert_allclose(dashed[COLORS["bp"]].get_ydata(), [20.5, 22.5, 25, 25.65])
    np.testing.assert_allclose(dashed[COLORS["ls"]].get_ydata(), [21, 21.8, 22.7, 22.9])
    assert "dashed: averaged output" in [t.get_text() for t in panel.get_legend().get_texts()]


def test_a_later_statistic_column_reads_and_a_mangled_header_is_corrupt(tmp_path):
    """Each stopping rule declares its own statistic column (issue 32), so a column this code
    does not know (a rule added later) reads; a header no writer makes (a blank in a name, a
    repeated column) is corrupt."""
    write_stream_job(tmp_path / "j", "bp", 0, BP[0], chosen=BP_RULES)
    path = tmp_path / "j" / "metrics.csv"
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0] + ",newrule_stat"] + [ln + ",1" for ln in text[1:]]) + "\n")
    assert all(row["newrule_stat"] == 1.0 for row in read_metrics_csv(path))
    for header in (text[0] + ",blurry psnr", text[0] + ",psnr"):
        path.write_text("\n".join([header] + [ln + ",1" for ln in text[1:]]) + "\n")
        with pytest.raises(CorruptRecord, match="expected"):
            read_metrics_csv(path)


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not on PATH (apt-get install -y texlive-latex-base texlive-latex-recommended)")
def test_latex_with_the_stream_tables_compiles(report, tmp_path):
    write_report(report, tmp_path, figure=False)
    doc = (tmp_path / "report.tex").read_text()
    assert "\\input{table1_streams}" in doc and "\\input{stopping_streams}" in doc and "\\input{stopping}" in doc
    tex = (tmp_path / "table1_streams.tex").read_text()
    assert "\\shortstack{\\textbf{25.65 $\\pm$ 0.92 / 0.733}\\\\($+1.55$)}" in tex and "\\toprule" in tex
    for name in ("table1_streams.tex", "stopping_streams.tex", "stopping.tex", "report.tex"):
        assert (tmp_path / name).read_text().isascii(), name
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "report.pdf").read_bytes()[:4] == b"%PDF"


def test_rules_that_watched_the_average_get_their_own_rows(tmp_path):
    """Issue 32: a record's ``choices.average`` (the rules that watched the average themselves)
    gives stopping_streams.csv rows ``<rule>@average``, measured against the average's oracle."""
    import json

    from bpdip.report.stream_stopping import stream_stopping_table

    write_stream_job(tmp_path / "bp", "bp", 0, BP[0], chosen=BP_RULES)
    path = tmp_path / "bp" / "summary.json"
    summary = json.loads(path.read_text())
    for name, e in summary["images"].items():
        avg = e["streams"]["average"]["stopping"]
        e["choices"] = {"average": {"oracle": avg["oracle"], "fixed": avg["fixed"],
                                    "emv": {**avg["fixed"], "iteration": 200, "stopped": True, "stop_iteration": 250,
                                            "psnr": BP[0][name]["average"][2]}}}
    path.write_text(json.dumps(summary))
    frame = stream_stopping_table(build_report(load_local([str(tmp_path)])))
    row = frame[(frame.stream == "average") & (frame.rule == "emv@average")].iloc[0]
    # face: 25 at its oracle 25 (0); zebra: 25 against its oracle 26 (-1)
    assert row.n == 2 and row.mean_psnr == pytest.approx(25.0) and row.gap_db == pytest.approx(-0.5)
    assert row.iteration == 200 and row.stopped == 1.0
    assert "emv" in set(frame[frame.stream == "average"].rule)  # the perturbed rule's rows stay
