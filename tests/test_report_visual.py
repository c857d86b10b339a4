"""The restored-image figures (bpdip.report.visual, the paper's Figs. 2-5) from hand-made records."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from bpdip.data import SET14_DIR, center_crop, load_image
from bpdip.paper import LOSSES
from bpdip.physics import degrade, derive_seed, make_kernel
from bpdip.records import SCHEMA, curve_rows, write_json, write_metrics_csv, write_npy, write_png
from bpdip.report import build_report, load_local, write_report
from bpdip.report.visual import VisualSettings, detail_region, figure

SIZE = 24  # data.crop: a tiny centre crop of Set14's face
INPUT = {"psnr": 17.125, "ssim_dr2": 0.4321}  # y's numbers as a record holds them (the report never measures)
LABELS = ["Truth x", "Blurred input y", "LS", "LS-TV", "BP", "BP-TV"]


@pytest.fixture(scope="module")
def configs(compose_config):
    """loss -> the resolved config of a uniform / var 0.3 job on face (as run_cell writes it)."""
    def one(loss, kernel="uniform", var=0.3):
        cfg = compose_config("experiment=smoke", "data.images=[face]", f"data.crop={SIZE}", f"loss={loss}",
                             f"kernel={kernel}", f"noise.var={var}")
        return OmegaConf.to_container(cfg, resolve=True)
    return one


def truth() -> np.ndarray:
    return center_crop(load_image(SET14_DIR / "face.png"), SIZE)


def observed(var=0.3) -> np.ndarray:
    """y of face as the runner makes it: the kernel, eq. 1 with the image's noise seed."""
    return degrade(truth(), make_kernel("uniform", size=9), var, derive_seed(0, "face", "noise"))


def write_record(job, config, loss, k, new=True, restored_stream="perturbed", save=True, kernel="uniform", var=0.3,
                 keep_input=True, input_metrics=True):
    """One job directory of one image, ``face``: record values that differ per loss (``k``)
    and per stream, PNGs that are the truth plus a loss's amount of noise. ``new``: today's
    schema with ``streams`` and the ``images`` map; else the records before the output
    streams (schema 3), with only ``restored/face.png``. ``keep_input``: y (float32 .npy)
    and the truth beside them, as the runner keeps them since issue 28, and
    (``input_metrics``) y's numbers :data:`INPUT` in the entry's ``input``."""
    job.mkdir(parents=True)
    entry = {}
    if keep_input and save:
        write_npy(job / "images" / "face" / "y.npy", observed(var).astype(np.float32))
        write_png(job / "images" / "face" / "truth.png", truth())
        entry["input"] = {"y": "images/face/y.npy", "truth": "images/face/truth.png",
                          **(INPUT if input_metrics else {})}
    (job / "config.yaml").write_text(yaml.safe_dump(config))
    curve = [{"iteration": it, "psnr": 20.0 + k + it / 1000, "ssim": 0.5 + k / 100, "ssim_dr2": 0.6 + k / 100,
              "loss": 1.0, "seconds": 0.1} for it in (0, 10, 20)]
    write_metrics_csv(job / "metrics.csv", curve_rows("face", curve))
    entry |= {"status": "complete", "peak_psnr": curve[-1]["psnr"], "peak_iteration": 20, "peak_ssim": curve[-1]["ssim"],
             "peak_ssim_dr2": curve[-1]["ssim_dr2"], "final_psnr": 21.111 + k, "final_ssim": 0.4,
             "final_ssim_dr2": 0.7123 + k / 100, "runtime_s": 1.0, "iterations": 25, "error": None}
    rng = np.random.default_rng(int(10 * k))
    noisy = lambda amount: np.clip(truth() + amount * rng.standard_normal(truth().shape), 0, 1)  # noqa: E731
    if save:
        write_png(job / "restored" / "face.png", noisy(0.02 * (k + 1)))
    if new:
        entry["restored_stream"] = restored_stream
        entry["streams"] = {s: {"peak_psnr": 30.0 + k + j, "peak_iteration": 10 + j, "peak_ssim_dr2": 0.8 + j / 100,
                                "stopping": {"wmv": {"iteration": 15 + j, "psnr": 25.5 + k + j,
                                                     "ssim_dr2": 0.55 + j / 100}}}
                            for j, s in enumerate(("perturbed", "clean", "average"))}
        entry["images"] = {}
        for key in ("perturbed.oracle", "average.oracle", f"{restored_stream}.wmv"):
            entry["images"][key] = f"images/face/{key}.png"
            write_png(job / entry["images"][key], noisy(0.03))
    write_json(job / "summary.json", {"schema": SCHEMA, "images": {"face": entry}, "run": {
        "cell": {"kernel": kernel, "noise_var": var, "loss": loss}, "config_hash": f"h-{loss}-{kernel}-{var}",
        "seed": 0, "iterations": 25, "log_every": 10, "status": "complete"}})
    return entry


def texts(fig):
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    labels = [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()]
    return titles, labels


def numbers(psnr, ssim) -> str:
    return f"{psnr:.2f} dB / {ssim:.3f}"


def test_figure_has_the_six_panels_with_the_records_numbers(tmp_path, configs):
    entries = {loss: write_record(tmp_path / "rec" / loss, configs(loss), loss, k) for k, loss in enumerate(LOSSES)}
    write_record(tmp_path / "rec" / "other", configs("ls", "gaussian", 1.0), "ls", 0, kernel="gaussian", var=1.0)
    report = build_report(load_local([str(tmp_path / "rec")]))
    report.visual_settings = VisualSettings.parse("paper,gaussian-1")
    visuals, notes = report.visuals
    assert [(v.kernel, v.noise_var, v.image, v.seed) for v in visuals] == [("uniform", 0.3, "face", 0),
                                                                         ("gaussian", 1.0, "face", 0)]
    assert len(notes) == 3 and all("no records" in n for n in notes)  # the paper's other three settings
    v = visuals[0]
    fig = figure(v)
    assert len(fig.axes) == 12 + 8 + 8  # six images, six close-ups; rows 2 and 3 have no truth / input
    titles, labels = texts(fig)
    assert titles[:6] == LABELS
    # the input's numbers are the record's own; the first row: each loss's perturbed peak
    expected = ["reference", numbers(INPUT["psnr"], INPUT["ssim_dr2"])]
    expected += [numbers(entries[loss]["streams"]["perturbed"]["peak_psnr"],
                         entries[loss]["streams"]["perturbed"]["peak_ssim_dr2"]) + "\n@10" for loss in LOSSES]
    assert labels[:6] == expected
    bold = [ax.xaxis.label.get_fontweight() for ax in fig.axes if ax.get_xlabel()]
    assert bold[:6] == ["normal"] * 5 + ["bold"]  # BP-TV has the highest PSNR of this row
    x, y = truth(), np.clip(observed(), 0, 1)
    images = [ax.get_images()[0].get_array() for ax in fig.axes]
    np.testing.assert_allclose(images[0], x)  # the truth
    np.testing.assert_allclose(images[2], y, atol=1e-6)  # kept as float32
    top, left, size = v.region
    assert size == 8 and 0 <= top <= SIZE - size and 0 <= left <= SIZE - size
    for main, zoom in zip(images[0::2], images[1::2]):  # every close-up is the same window of its image
        np.testing.assert_allclose(zoom, main[top:top + size, left:left + size])
    import matplotlib.pyplot as plt

    plt.close(fig)
    other = figure(visuals[1])  # a setting on request: only LS has records
    assert texts(other)[0][:6] == LABELS and "no record" in [t.get_text() for ax in other.axes for t in ax.texts]
    plt.close(other)

    out = tmp_path / "out"
    paths = write_report(report, out)
    for stem in ("visual-uniform-0p3-face", "visual-gaussian-1-face"):
        assert out / f"{stem}.png" in paths and (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
    md = (out / "report.md").read_text()
    section = md.split("## Restored images (Figs. 2-5)")[1].split("\n## ")[0]
    assert "![Fig. 2 (cf. the paper): Uniform kernel" in section and "(visual-uniform-0p3-face.png)" in section
    assert "row 1: the perturbed output (Table I's stream) at each image's own best logged iteration" in section
    tex = (out / "visual.tex").read_text()
    assert tex.isascii() and "\\includegraphics[" in tex and "{visual-uniform-0p3-face.pdf}" in tex
    assert "\\input{visual}" in (out / "report.tex").read_text()
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not on PATH (apt-get install -y texlive-latex-base texlive-latex-recommended)")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=out,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "visual-uniform-0p3-face.pdf" in done.stdout  # the figure is included, not the fallback box


def test_records_with_streams_get_the_oracle_average_and_wmv_rows(tmp_path, configs):
    entries = {loss: write_record(tmp_path / "rec" / loss, configs(loss), loss, k, restored_stream="average")
               for k, loss in enumerate(LOSSES)}
    report = build_report(load_local([str(tmp_path / "rec")]))
    report.visual_settings = VisualSettings.parse(region="3,4,10")
    (v,) = report.visuals[0]
    assert [r.key for r in v.rows] == ["perturbed.oracle", "average.oracle", "restored.wmv"]
    assert v.region == (3, 4, 10) and v.region_note == "the configured window"
    fig = figure(v)
    assert len(fig.axes) == 12 + 8 + 8  # the second and third rows have no truth / input panels
    titles, labels = texts(fig)
    assert titles == LABELS + LABELS[2:] * 2
    streams = {loss: e["streams"] for loss, e in entries.items()}
    assert labels[2:6] == [numbers(streams[loss]["perturbed"]["peak_psnr"], streams[loss]["perturbed"]["peak_ssim_dr2"])
                           + "\n@10" for loss in LOSSES]
    assert labels[6:10] == [numbers(streams[loss]["average"]["peak_psnr"], streams[loss]["average"]["peak_ssim_dr2"])
                            + "\n@12" for loss in LOSSES]
    wmv = [streams[loss]["average"]["stopping"]["wmv"] for loss in LOSSES]  # the restored stream's choice
    assert labels[10:] == [numbers(w["psnr"], w["ssim_dr2"]) + "\n@17" for w in wmv]
    import matplotlib.pyplot as plt

    plt.close(fig)
    md = build_report(load_local([str(tmp_path / "rec")])).visuals  # default: automatic window
    assert md[0][0].region_note.startswith("chosen automatically")


@pytest.mark.parametrize("save", [False, True])
def test_records_without_images_give_no_section(tmp_path, configs, save):
    """No saved image, or records older than the output streams (schema 3: no ``images``
    map, only ``restored/face.png``): nothing is drawn and a note says so."""
    for k, loss in enumerate(LOSSES):
        write_record(tmp_path / "rec" / loss, configs(loss), loss, k, new=False, save=save)
    report = build_report(load_local([str(tmp_path / "rec")]))
    visuals, notes = report.visuals
    assert visuals == [] and "uniform / var 0.3 / image face: no complete record with a saved image" in notes
    out = tmp_path / "out"
    paths = write_report(report, out)
    assert "Restored images" not in (out / "report.md").read_text()
    assert not (out / "visual.tex").exists() and not any(p.name.startswith("visual") for p in paths)


def test_detail_region_is_the_window_where_the_local_errors_differ_most():
    rng = np.random.default_rng(3)
    x = rng.random((13, 17, 3))
    methods = [np.clip(x + a * rng.standard_normal(x.shape), 0, 1) for a in (0.05, 0.1, 0.2)]

    def brute(size):  # every window's MSE per method, directly; the largest variance over methods
        best, where = -1.0, None
        for top in range(13 - size + 1):
            for left in range(17 - size + 1):
                mse = [((m - x)[top:top + size, left:left + size] ** 2).mean() for m in methods]
                if np.var(mse) > best + 1e-15:
                    best, where = np.var(mse), (top, left, size)
        return where

    for size in (4, 5):
        assert detail_region(methods, x, size) == brute(size)
    planted = [x.copy(), x.copy()]
    planted[1][6:11, 2:7] = 0.0  # one method is wrong in one 5x5 block only
    assert detail_region(planted, x, 5) == (6, 2, 5)
    assert detail_region(planted, None, 5) == (6, 2, 5)  # without the truth: where they differ


def test_visual_options_are_checked(tmp_path, capsys):
    from bpdip.report.cli import main

    s = VisualSettings.parse("uniform-0.3,gaussian-4", "all", "1,2,8")
    assert s.settings == (("uniform", 0.3), ("gaussian", 4.0)) and s.images == ("all",) and s.region == (1, 2, 8)
    assert VisualSettings.parse("none").settings == ()
    for bad in (["--visual", "uniform"], ["--visual-region", "1,2"], ["--visual-images", ","]):
        (tmp_path / "rec").mkdir(exist_ok=True)
        write_json(tmp_path / "rec" / "summary.json", {"schema": SCHEMA, "run": {}, "images": {}})
        assert main([str(tmp_path / "rec"), "--out", str(tmp_path / "o"), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --visual") and "\n" not in err


def test_older_records_without_y_draw_the_methods_alone(tmp_path, configs):
    """Records written before the runner kept y: no truth or input panel, a note says why,
    and nothing of the runner is imported to re-make them."""
    for k, loss in enumerate(LOSSES):
        write_record(tmp_path / "rec" / loss, configs(loss), loss, k, keep_input=False)
    report = build_report(load_local([str(tmp_path / "rec")]))
    (v,) = report.visuals[0]
    assert v.truth is None and v.blurred is None
    assert any("keep no observation (images/face/y.npy" in n for n in v.notes)
    assert v.region_note == "chosen automatically: where the methods differ most"
    import matplotlib.pyplot as plt

    fig = figure(v)
    assert texts(fig)[0] == LABELS[2:] * 3
    plt.close(fig)


def test_records_without_the_inputs_numbers_say_so(tmp_path, configs):
    """y and the truth kept without y's PSNR / SSIM (backfilled records): the input is drawn
    with a note instead of numbers, which are never measured here."""
    for k, loss in enumerate(LOSSES):
        write_record(tmp_path / "rec" / loss, configs(loss), loss, k, input_metrics=False)
    (v,) = build_report(load_local([str(tmp_path / "rec")])).visuals[0]
    assert v.truth is not None and v.blurred.psnr is None
    assert v.blurred.text() == "its PSNR is not in the record"


def test_a_run_keeps_y_and_the_inputs_metrics(compose_config, tmp_path):
    """A real tiny run keeps y exactly as the runner made it and the truth on its frame, with
    y's PSNR / SSIM against x (scikit-image here); the report draws them from the records."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from bpdip.runner import run_cell
    from bpdip.runner.cell import degraded
    from bpdip.runner.plan import plan_cell

    cfg = compose_config("experiment=smoke", "results_root=null", "data.images=[face]", f"data.crop={SIZE}",
                     "loss.iterations=2", "kernel=uniform", "noise.var=0.3")
    summary = run_cell(cfg, tmp_path / "job")
    entry = summary["images"]["face"]
    plan = plan_cell(OmegaConf.to_container(cfg, resolve=True))
    x, y = degraded(plan, plan.tasks[0])
    kept = np.load(tmp_path / "job" / entry["input"]["y"])
    assert kept.dtype == np.float32 and np.array_equal(kept, y.astype(np.float32))
    np.testing.assert_array_equal(load_image(tmp_path / "job" / entry["input"]["truth"]), x)
    clipped = np.clip(y, 0, 1)
    assert entry["input"]["psnr"] == pytest.approx(peak_signal_noise_ratio(x, clipped, data_range=1.0), abs=1e-6)
    assert entry["input"]["ssim_dr2"] == pytest.approx(
        structural_similarity(x, clipped, data_range=2.0, channel_axis=2), abs=1e-4)
    report = build_report(load_local([str(tmp_path / "job")]))
    (v,) = report.visuals[0]
    assert v.blurred.psnr == entry["input"]["psnr"] and v.truth is not None
