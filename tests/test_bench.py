"""scripts/bench.py runs for real on the CPU at a tiny size and reports consistent numbers."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bpdip.engine import count_flops

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["bench"] = bench  # dataclasses look their module up there
spec.loader.exec_module(bench)

TINY = ["--device", "cpu", "--net", "slim", "--steps", "2", "--warmup-steps", "1", "--log-every", "1",
        "--original-steps", "1", "--check-size", "40", "--threads", "1"]


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "cpu.json"
    before = torch.get_num_threads()  # --threads 1 must not outlive this module's run
    try:
        bench.main(TINY + ["--sizes", "40,64x48", "--stack-k", "2", "--stack-size", "48", "--memory-size", "40",
                           "--out", str(out)])
    finally:
        torch.set_num_threads(before)
    return out


def test_cpu_benchmark_measures_every_loop(cpu_run):
    report = json.loads(cpu_run.read_text())
    rows = [r for r in report["rows"] if "ms_per_step" in r]
    errors = [r for r in report["rows"] if "error" in r or "skipped" in r]
    assert not errors, errors
    assert report["meta"]["label"].startswith("CPU benchmark")
    wanted = {"ref-plain", "ref-original", "eager-fp32", "eager-bf16", "eager-bf16-cl"}
    for size in ("40x40", "64x48"):  # at the first size also the stopping rules' and the streams' rows
        extra = {"eager-fp32+stop", "eager-fp32-nostreams"} if size == "40x40" else set()
        assert {r["variant"] for r in rows if r["size"] == size and r["k"] == 1} == wanted | extra
    for r in rows:
        assert r["ms_per_step"] > 0 and r["steps_per_s"] == pytest.approx(1e3 / r["ms_per_step"])
        h, w = (int(v) for v in r["size"].split("x"))
        flops = count_flops(h, w, **bench.NETS["slim"])["train"] * r["k"]  # independent recount
        assert r["tflops"] == pytest.approx(flops / (r["ms_per_step"] / 1e3) / 1e12)
        assert r["peak_memory_gb"] is None  # no per-measurement peak on the CPU: reported as n/a
    # the engine runs trained: PSNR recorded at each log, and the final image is finite
    eng = [r for r in rows if r["variant"] == "eager-fp32" and r["k"] == 1]
    # 40x40: its size row, the stopping pair's and the streams pair's; 64x48; 48x48 (stack check)
    assert len(eng) == 5 and all(len(r["psnr_curve"]) == 4 and np.isfinite(r["final_psnr"]) for r in eng)
    # K-run stacking: ratio = K * single / stacked, from the rows themselves
    (stack,) = [s for s in report["stack"] if s["size"] == "48x48"]
    single = next(r["ms_per_step"] for r in eng if r["size"] == "48x48")  # measured for the stack check
    assert stack["k"] == 2 and stack["ratio_vs_separate"] == pytest.approx(2 * single / stack["ms_per_step"])
    assert report["memory_check"]["size"] == "40x40" and report["memory_check"]["k"] == 4
    # equivalence checks ran and passed (float64: stacked vs separate agree to rounding)
    assert report["checks"] and all(c["passed"] for c in report["checks"])


def test_curve_agreement_recomputed_from_the_rows(cpu_run):
    """Each engine run's max |dPSNR| against the strictest variant of its size, from the
    rows' own curves (JSON keys are strings); run 0 of a stack shares seed 1 with K = 1."""
    report = json.loads(cpu_run.read_text())
    rows = [r for r in report["rows"] if r.get("psnr_curve")]
    for size, a in report["agreement"].items():
        assert a["reference"] == "eager-fp32"
        ref = next(r["psnr_curve"] for r in rows if r["size"] == size and r["variant"] == "eager-fp32" and r["k"] == 1)
        others = [r for r in rows if r["size"] == size and (r["variant"], r["k"]) != ("eager-fp32", 1)]
        assert set(a["max_psnr_gap_db"]) == {r["variant"] if r["k"] == 1 else f"{r['variant']} K={r['k']}"
                                            for r in others}
        for r in others:
            name = r["variant"] if r["k"] == 1 else f"{r['variant']} K={r['k']}"
            want = max(abs(p - ref[i]) for i, p in r["psnr_curve"].items())
            assert a["max_psnr_gap_db"][name] == pytest.approx(want)
    assert report["agreement"]["40x40"]["max_psnr_gap_db"]["eager-bf16"] > 0  # bf16 does round differently


def test_profile_breaks_a_step_down(tmp_path):
    """--profile: per-kernel (GPU) or per-operator (CPU) time of one step, summed into
    PROTOCOL's categories; the shares add up, the top list is sorted and the real
    operators of the step are there."""
    out = tmp_path / "p.json"
    bench.main(TINY + ["--sizes", "40", "--variants", "eager-fp32", "--no-references", "--no-checks",
                       "--stack-k", "", "--memory-size", "", "--profile", "eager-fp32", "--out", str(out)])
    (prof,) = json.loads(out.read_text())["profile"]
    assert prof["variant"] == "eager-fp32" and prof["size"] == "40x40" and prof["ms_per_step"] > 0
    assert sum(c["share"] for c in prof["categories"].values()) == pytest.approx(1.0)
    assert sum(c["ms"] for c in prof["categories"].values()) == pytest.approx(prof["ms_per_step"])
    ms = [t["ms"] for t in prof["top"]]
    assert ms == sorted(ms, reverse=True)
    assert {"convolution", "batchnorm", "padding", "upsampling", "adam"} <= set(prof["categories"])


def test_profile_categories_of_gpu_kernel_names():
    from bpdip.bench.profile import category

    names = {
        "void cudnn::bn_fw_tr_1C11_kernel_NCHW<float, float, int, 512, true, 1>": "batchnorm",
        "void at::native::batch_norm_backward_kernel<float>": "batchnorm",
        "sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc": "convolution",
        "void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16>": "layout",
        "void at::native::reflection_pad2d_out_kernel<float>": "padding",
        "void at::native::upsample_bilinear2d_out_frame<float, float>": "upsampling",
        "void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdam>": "adam",
        "regular_fft_factor_8x8": "fft",
        "triton_per_fused__native_batch_norm_legit_functional_leaky_relu_0": "batchnorm",
        "triton_poi_fused_add_mul_1": "fused (triton)",
        "void at::native::vectorized_elementwise_kernel<4, LeakyReLU>": "other",
    }
    assert {n: category(n) for n in names} == names
    with pytest.raises(SystemExit, match="without CUDA graphs"):
        bench.parse_args(["--profile", "graphs-tf32"])


def test_printed_table(cpu_run, capsys):
    bench.print_table(json.loads(cpu_run.read_text()))
    out = capsys.readouterr().out
    assert "ms/step" in out and "ref-original" in out and "Table I projected" in out and "check:" in out


def test_projection_of_table1(cpu_run):
    """PROTOCOL: 14 images x 9 settings x (2 x 10,000 + 2 x 7,000) steps, each at its
    image's size, with ms/step modelled as a + b * pixels through the measured sizes.
    Recomputed here independently from the rows."""
    report = json.loads(cpu_run.read_text())
    pts = [(r["pixels"], r["ms_per_step"]) for r in report["rows"] if r.get("variant") == "ref-plain"]
    (p1, m1), (p2, m2) = pts
    b = (m2 - m1) / (p2 - p1)
    a = m1 - b * p1
    if a < 0 or b < 0:  # the stated fallbacks when the free fit is not physical
        a, b = (0.0, (m1 * p1 + m2 * p2) / (p1**2 + p2**2)) if b >= 0 else ((m1 + m2) / 2, 0.0)
    sizes = [(480, 500), (576, 720), (512, 512), (288, 352), (361, 250), (276, 276), (362, 500), (288, 352),
             (512, 512), (512, 512), (512, 768), (512, 512), (656, 529), (391, 586)]  # Set14, H x W
    hours = sum(9 * (2 * 10_000 + 2 * 7_000) * (a + b * h * w) / 1e3 for h, w in sizes) / 3600
    assert report["projection"]["ref-plain"]["hours"] == pytest.approx(hours, rel=1e-6)
    assert bench.TABLE1_ITERS_PER_IMAGE * 14 == 4_284_000  # PROTOCOL's 4.28M iterations


def test_quality_mode_and_its_verdict(tmp_path):
    out = tmp_path / "q.json"
    bench.main(TINY + ["--quality", "--quality-crop", "40", "--quality-iterations", "2", "--out", str(out)])
    q = json.loads(out.read_text())["quality"]
    assert len(q["runs"]) == 3 * 2 * 4 and {r["status"] for r in q["runs"]} == {"complete"}
    s = q["summary"]
    for loss, v in s["per_loss"].items():  # the gap is the difference of the per-image means
        peaks = {var: np.mean([r["peak_psnr"] for r in q["runs"] if r["loss"] == loss and r["variant"] == var])
                 for var in q["variants"]}
        assert v["gap_db"] == pytest.approx(peaks["eager-bf16"] - peaks["eager-fp32"])
        assert v["images"] == ["comic", "face", "foreman"]
    assert s["complete"] and not s["protocol_run"] and not s["passed"]  # a toy run is never evidence


def test_timings_then_quality_in_one_run_with_their_own_budgets(tmp_path):
    """--sizes/--quick with --quality: the timings first, then the quality check, in one
    JSON; --speed-budget-s stops the timings only (here at once: every row skipped)."""
    out = tmp_path / "both.json"
    bench.main(TINY + ["--sizes", "40", "--no-checks", "--stack-k", "", "--memory-size", "", "--speed-budget-s", "0",
                       "--quality", "--quality-crop", "40", "--quality-iterations", "2", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["rows"] and all(r.get("skipped") == "time budget" for r in report["rows"])
    assert {r["status"] for r in report["quality"]["runs"]} == {"complete"}
    assert report["meta"]["args"]["budget_s"] is None  # the quality check ran under the whole run's budget


def test_quality_check_resumes_the_finished_pairs_of_an_earlier_run(tmp_path):
    """A quality run cut short (here: one image of three) is completed by a second one
    with --resume: the finished (image, precision) pairs are kept as they were, only the
    others run, and the verdict covers all three images; other settings are refused."""
    quality = ["--quality", "--quality-crop", "40", "--quality-iterations", "2"]
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    bench.main(TINY + quality + ["--quality-images", "face", "--out", str(first)])
    bench.main(TINY + quality + ["--resume", str(first), "--out", str(second)])
    before = json.loads(first.read_text())["quality"]["runs"]
    q = json.loads(second.read_text())["quality"]
    resumed = [r for r in q["runs"] if "resumed_from" in r]
    assert [{k: v for k, v in r.items() if k != "resumed_from"} for r in resumed] == before
    assert {r["image"] for r in q["runs"] if "resumed_from" not in r} == {"comic", "foreman"}
    assert len(q["runs"]) == 3 * 2 * 4 and q["summary"]["complete"]
    with pytest.raises(SystemExit, match=r"differ in \['kernel'\]"):
        bench.main(TINY + quality + ["--quality-kernel", "gaussian", "--resume", str(first),
                                     "--out", str(tmp_path / "x.json")])


def test_quality_summary_rules():
    def runs(gaps, images=("a", "b", "c")):
        return [dict(image=i, variant=v, loss=loss, peak_psnr=30.0 + (gaps[loss] if v == "bf16" else 0.0))
                for i in images for v in ("tf32", "bf16") for loss in gaps]

    ok = bench.quality_summary(runs({"ls": 0.05, "bp": -0.08}), ["tf32", "bf16"], ["ls", "bp"])
    assert ok["passed"] and ok["per_loss"]["bp"]["gap_db"] == pytest.approx(-0.08)
    assert not bench.quality_summary(runs({"ls": 0.05, "bp": -0.15}), ["tf32", "bf16"], ["ls", "bp"])["passed"]
    few = bench.quality_summary(runs({"ls": 0.0}, images=("a", "b")), ["tf32", "bf16"], ["ls"])
    assert not few["complete"] and not few["passed"]  # fewer than three images


def test_timing_window_defaults():
    """The window runs from one logged iteration to another: defaults keep PROTOCOL's 100."""
    a = bench.parse_args([])
    assert (a.steps, a.log_every, a.warmup_steps) == (200, 100, 100)
    a = bench.parse_args(["--steps", "3"])
    assert (a.log_every, a.warmup_steps) == (3, 3)
    a = bench.parse_args(["--steps", "150"])
    assert (a.log_every, a.warmup_steps) == (50, 50)


def test_bad_options_fail_clearly(tmp_path):
    with pytest.raises(SystemExit, match="multiples of --log-every"):
        bench.parse_args(["--steps", "3", "--log-every", "2", "--warmup-steps", "2"])
    with pytest.raises(SystemExit, match="unknown variant 'turbo'"):
        bench.parse_args(["--variants", "turbo"])
    with pytest.raises(SystemExit, match="needs a CUDA device"):
        bench.main(TINY + ["--variants", "graphs-tf32", "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="bad size '12x'"):
        bench.make_problem("12x", "cpu")


def test_time_budget_skips_but_still_writes(tmp_path):
    out = tmp_path / "b.json"
    bench.main(TINY + ["--sizes", "40", "--budget-s", "0", "--no-checks", "--stack-k", "", "--memory-size", "",
                       "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert rows and all(r.get("skipped") == "time budget" for r in rows)


def test_output_streams_have_their_overhead_row(cpu_run):
    """Issue 20: the default variant timed without and with the clean and average streams."""
    report = json.loads(cpu_run.read_text())
    o = report["streams_overhead"]
    rows = [r for r in report["rows"] if r.get("size") == o["size"] and r.get("k") == 1]
    without = [r for r in rows if r["variant"] == "eager-fp32-nostreams"]
    assert o["variant"] == "eager-fp32" and len(without) == 1 and o["ms_without"] == without[0]["ms_per_step"]
    assert o["ms_with"] > 0 and o["limit"] == 0.03
    assert o["overhead"] == pytest.approx(o["ms_with"] / o["ms_without"] - 1)
    assert o["passed"] == (o["overhead"] <= 0.03)


def test_stopping_rules_have_their_overhead_row(cpu_run):
    """Issue 10: the default variant timed with and without the online stopping rules."""
    report = json.loads(cpu_run.read_text())
    o = report["stopping_overhead"]
    rows = {r["variant"]: r for r in report["rows"] if r.get("size") == o["size"] and r.get("k") == 1}
    assert o["variant"] == "eager-fp32" and {"eager-fp32", "eager-fp32+stop"} <= set(rows)
    assert o["ms_with"] == rows["eager-fp32+stop"]["ms_per_step"] and o["ms_without"] > 0
    assert o["overhead"] == pytest.approx(o["ms_with"] / o["ms_without"] - 1) and o["limit"] == 0.05
    assert o["passed"] == (o["overhead"] <= 0.05)


def test_cpu_matrix_alternates_variants_and_reports_ratios(tmp_path, monkeypatch):
    """--cpu-matrix (issue 21): every variant of a (net, size) block is timed in every round,
    the fp32 row's ratio to itself is exactly 1, a ratio is the median of the per-round
    ratios (recomputed here from the JSON's rounds), and the profile has its categories.
    torch.compile is swapped for an eager pass-through: inductor's C++ build takes about a
    minute on this CPU (the real run times it)."""
    from bpdip.bench import cpu

    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)
    steps_for = cpu.steps_for
    # windows of ~100 ms of work instead of 1.5 s: the test checks the bookkeeping, not the timings
    monkeypatch.setattr(cpu, "steps_for", lambda net, size, budget_ms=0: steps_for(net, size, 100.0))
    out = tmp_path / "matrix.json"
    bench.main(["--device", "cpu", "--cpu-matrix", "--cpu-problems", "slim:33", "--cpu-variants",
                "fp32,bf16,compile-fp32,fp32@2", "--rounds", "3", "--threads", "1", "--profile", "eager-fp32",
                "--out", str(out)])
    rep = json.loads(out.read_text())
    [block] = rep["cpu_matrix"]
    rows = {r["variant"]: r for r in block["rows"]}
    assert list(rows) == ["fp32", "bf16", "compile-fp32", "fp32@2"]
    assert rows["fp32"]["speedup_vs_fp32"] == 1.0 and rows["fp32@2"]["threads"] == 2
    assert rows["bf16"]["engine"] == "bf16" and rows["compile-fp32"]["engine"] == "fp32+compile"
    for r in rows.values():
        assert len(r["ms_rounds"]) == 3 and r["ms_per_step"] == float(np.median(r["ms_rounds"]))
        want = float(np.median([b / m for b, m in zip(rows["fp32"]["ms_rounds"], r["ms_rounds"])]))
        assert r["speedup_vs_fp32"] == pytest.approx(want)
    assert steps_for("paper", 256) < steps_for("paper", 128) < steps_for("small", 96)
    [prof] = rep["profiles"]
    assert prof["net"] == "slim" and "convolution" in prof["categories"]
    assert sum(c["share"] for c in prof["categories"].values()) == pytest.approx(1.0)
