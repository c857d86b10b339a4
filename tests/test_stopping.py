"""Stopping rules (bpdip/stopping/) against hand-made sequences with known answers, and on
real tiny runs: with and without stop.early, resumed from a checkpoint, in the records."""

import math

import numpy as np
import pytest
import torch

from bpdip.loop import Callback, LoopSettings, restore, seeded_model
from bpdip.losses import make_loss
from bpdip.models import SkipNet
from bpdip.physics import Blur, make_kernel
from bpdip.stopping import RULES, StopSettings, Stopping, scaled
from bpdip.stopping.emv import EMV
from bpdip.stopping.wmv import WMV

SHAPE = (1, 2, 2)  # (C, H, W) of the hand-made "images"
NOGUARD = {"fraction": 0.0, "floor": 0}  # the warm-up guard off: hand-made sequences choose from t = 0


def images(values, b=1):
    """Constant images x_t = v_t (B=1) or one sequence per sample (B, T)."""
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    return [torch.tensor(v[:, t], dtype=torch.float32)[:, None, None, None].expand(v.shape[0], *SHAPE).clone()
            for t in range(v.shape[1])]


def feed(rule, xs, view=None):
    values = []
    for t, x in enumerate(xs):
        rule.update(torch.tensor(t), x, view)
        values.append(rule.value.clone())
    return torch.stack(values)


def test_scaled_window_and_patience_follow_the_config_rule():
    assert scaled(100, 1500, 5000) == 30 and scaled(1000, 1500, 5000) == 300
    assert scaled(100, 7000, 5000) == 100  # longer runs keep the reference values
    # never below the floor of 10 iterations (issue 29: a window of 1 picks iteration 0), but a
    # configured value below the floor stays as configured, and 0 becomes 1 as before
    assert scaled(100, 10, 5000) == 10 and scaled(1000, 20, 5000) == 10 and scaled(100, 400, 5000) == 10
    assert scaled(100, 600, 5000) == 12 and scaled(3, 20, 5000) == 3 and scaled(0, 20, 5000) == 1
    eff = StopSettings().effective(1500)
    assert eff["wmv"] == {"window": 30, "patience": 300} and eff["emv"]["start"] == 30


def test_wmv_variance_minimum_and_patience_on_a_hand_made_sequence():
    # W = 3: windows (t = 2..) of 1,2,4 | 2,4,4 | 4,4,4.2 | 4,4.2,4.1 | 4.2,4.1,9 | 4.1,9,1 | ...
    seq = [1, 2, 4, 4, 4.2, 4.1, 9, 1, 9, 1, 9, 9, 9]
    rule = WMV(1, SHAPE, "cpu", window=3, patience=4)
    xs = images(seq)
    values = feed(rule, xs)[:, 0].numpy()
    f32 = np.float32(seq).astype(np.float64)  # the outputs are float32 images
    expect = [math.nan, math.nan] + [np.var(f32[t - 2 : t + 1]) for t in range(2, len(seq))]
    np.testing.assert_allclose(values, expect, rtol=1e-9, atol=1e-12)
    # minima: t=2 (1.56), 3 (0.89), 4 (0.0089); t=5 is 0.0067 < 0.0089: new minimum; then
    # t=6.. larger; wait counts 1, 2, 3, 4 at t = 6, 7, 8, 9: stops at 9; t=12 (var 0) comes too late
    assert int(rule.best_it) == 5 and bool(rule.stopped) and int(rule.stop_it) == 9
    torch.testing.assert_close(rule.candidate, xs[5])
    assert rule.choice(13) == [{"iteration": 5, "stopped": True, "stop_iteration": 9, "candidate": True}]


def test_wmv_keeps_samples_apart_and_freezes_after_its_stop():
    a = [1, 2, 4, 4, 4.2, 4.1, 9, 1, 9, 1, 9, 9, 9]
    b = [0, 1, 2, 4, 7, 11, 16, 22, 29, 37, 37, 37, 37]  # growing variance: t=2 best; var 0 at t=12 is too late
    rule = WMV(2, SHAPE, "cpu", window=3, patience=4)
    feed(rule, images([a, b], b=2))
    assert rule.best_it.tolist() == [5, 2] and rule.stop_it.tolist() == [9, 6]
    assert rule.stopped.tolist() == [True, True]


def test_emv_recursion_and_patience_against_numpy():
    seq = [0.2, 0.5, 0.55, 0.56, 0.7, 0.9, 0.2, 0.1, 0.9, 0.3]
    alpha, start = 0.1, 2
    rule = EMV(1, SHAPE, "cpu", alpha=alpha, patience=3, start=start)
    values = feed(rule, images(seq))[:, 0].numpy()
    seq = np.float32(seq).astype(np.float64).tolist()  # the outputs are float32 images
    ema, emv, want = seq[0], 0.0, [math.nan]
    for t in range(1, len(seq)):
        d = seq[t] - ema
        ema = min(max(ema + alpha * d, 0.0), 1.0)
        emv = (1 - alpha) * (emv + alpha * d * d)  # per element: all elements equal here
        want.append(emv if t >= start else math.nan)
    np.testing.assert_allclose(values, want, rtol=1e-6)
    # the rule: the running minimum of emv from `start`, stop after 3 iterations without one
    best, wait, stop = None, 0, None
    low = math.inf
    for t in range(start, len(seq)):
        if want[t] < low:
            low, best, wait = want[t], t, 0
        else:
            wait += 1
            if wait >= 3 and stop is None:
                stop = t
                break
    assert int(rule.best_it) == best
    assert (int(rule.stop_it) if bool(rule.stopped) else None) == stop


def test_discrepancy_stops_at_the_first_crossing_of_tau_m_sigma2():
    op = Blur(np.ones((1, 1)), SHAPE[1:])  # A = I
    y = torch.zeros(1, *SHAPE)
    sigma, tau = 0.1, 1.5  # threshold per measurement: 0.015, i.e. |x| <= 0.1225
    seq = [0.5, 0.3, 0.2, 0.12, 0.05, 0.3, 0.01]
    stopping = Stopping(StopSettings(discrepancy={"tau": tau}, warmup=NOGUARD), 10, op, y, sigma, "cpu")
    for x in images(seq):
        stopping.update(x)
    rule = stopping.rules["discrepancy"]
    assert int(rule.stop_it) == 3 and int(rule.best_it) == 3  # 0.12^2 = 0.0144 <= 0.015; 0.2^2 > 0.015
    torch.testing.assert_close(rule.candidate, images(seq)[3])
    assert float(rule.value) == pytest.approx(0.01**2)  # the last step's mean squared residual
    assert int(stopping.it) == len(seq)


def test_discrepancy_never_stops_without_noise():
    op = Blur(np.ones((1, 1)), SHAPE[1:])
    stopping = Stopping(StopSettings(), 10, op, torch.zeros(1, *SHAPE), 0.0, "cpu")
    for x in images([0.1, 1e-4]):
        stopping.update(x)
    assert not bool(stopping.rules["discrepancy"].stopped)
    assert stopping.choices(2)["discrepancy"] == [{"iteration": 2, "stopped": False, "stop_iteration": None,
                                                  "candidate": False}]


@pytest.mark.parametrize("cfg, message", [
    ({"name": "nosuch"}, "not a stopping rule"),
    ({"name": "oracle", "early": True}, "cannot stop a run early"),
    ({"name": "wmv", "windw": 3}, "unknown stop.* keys"),
])
def test_bad_stop_config_is_one_clear_line(cfg, message):
    with pytest.raises(ValueError, match=message) as err:
        StopSettings.from_config(cfg)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------- real tiny runs (restore)

def tiny(face_crop):
    x = face_crop
    k = make_kernel("gaussian", size=5, std=1.0)
    op = Blur(k, x.shape[-2:])
    g = torch.Generator().manual_seed(5)
    y = op.A(x.float()) + 0.02 * torch.randn(x.shape, generator=g)
    return x, y, op, make_loss("bp", op, y, 0.02)


@pytest.fixture(scope="module")
def problem():
    from bpdip.data import SET14_DIR, center_crop, load_image

    x = center_crop(load_image(SET14_DIR / "face.png"), 24)
    return tiny(torch.from_numpy(x).permute(2, 0, 1)[None])


def net():
    return seeded_model(lambda: SkipNet(in_channels=4, channels_down=(4, 4), channels_up=(4, 4),
                                        channels_skip=(2, 2)), 3)


RULES_SMALL = StopSettings(name="wmv", reference_iterations=40, wmv={"window": 3, "patience": 4},
                           emv={"alpha": 0.1, "patience": 4, "start": 2}, discrepancy={"tau": 1.0}, warmup=NOGUARD)


def run(problem, settings=RULES_SMALL, early=None, iterations=40, **kw):
    x, y, op, loss = problem
    stopping = Stopping(settings, iterations, op, y, 0.02, "cpu", fidelity=loss.fidelity)
    s = LoopSettings(**{"iterations": iterations, "log_every": 2, "progress": False, "input_depth": 4,
                        **kw.pop("loop", {})})
    [r] = restore(net(), loss, y, ["face"], s, x_true=x, device="cpu", stopping=stopping, stop_early=early, **kw)
    return r, stopping


def test_the_rules_change_nothing_the_run_computes(problem):
    x, y, op, loss = problem
    s = LoopSettings(iterations=12, log_every=2, progress=False, input_depth=4)
    [plain] = restore(net(), loss, y, ["face"], s, x_true=x, device="cpu")
    with_rules, _ = run(problem, iterations=12)
    np.testing.assert_array_equal(plain.losses, with_rules.losses)
    np.testing.assert_array_equal(plain.image, with_rules.image)
    assert [r["psnr"] for r in plain.curve] == [r["psnr"] for r in with_rules.curve]
    assert {"wmv_var", "emv", "residual"} <= set(with_rules.curve[-1])


def test_every_rule_is_recorded_with_its_psnr(problem):
    r, stopping = run(problem)
    assert list(r.stopping) == list(RULES)
    assert r.stopping["oracle"]["psnr"] == r.peak["psnr"] and r.stopping["fixed"]["psnr"] == r.last["psnr"]
    wmv = r.stopping["wmv"]
    assert wmv["stopped"], "the small window and patience must stop inside the run for the next tests"
    # the rule's PSNR is the PSNR of its own candidate (the output of that iteration)
    from bpdip.metrics import psnr

    assert wmv["psnr"] == pytest.approx(float(psnr(stopping.rules["wmv"].candidate.clamp(0, 1), problem[0])))
    # the logged statistic is ES-WMV's variance at that iteration
    logged = {rec["iteration"]: rec["wmv_var"] for rec in r.curve}
    assert math.isnan(logged[0]) and logged[4] > 0


def test_stop_early_ends_training_and_returns_the_rules_candidate(problem):
    full, _ = run(problem, output={"restore": "perturbed"})
    early, stopping = run(problem, early="wmv", output={"restore": "perturbed"})
    choice = full.stopping["wmv"]
    assert early.stopping["wmv"] == choice  # the same iteration, stop and PSNR
    assert early.stopped_early and early.iterations < full.iterations
    stop = choice["stop_iteration"]
    assert early.iterations == -(-stop // 2) * 2 + 1  # ends after the first logged iteration (every 2) >= the stop
    assert early.restored_from == {"rule": "wmv", "iteration": choice["iteration"]}
    assert early.final["psnr"] == pytest.approx(choice["psnr"])
    np.testing.assert_allclose(early.image, stopping.rules["wmv"].candidate[0].clamp(0, 1).permute(1, 2, 0).numpy())
    assert [r["psnr"] for r in early.curve] == [r["psnr"] for r in full.curve][: len(early.curve)]


@pytest.mark.parametrize("stream", ["average", "clean"])
def test_stop_early_restores_the_chosen_stream_at_the_rules_iteration(problem, stream):
    """output.restore=average|clean with stop.early: the restored image is that stream at the
    rule's iteration (clean: rounded down to the log grid, bpdip.streams), as in a full run."""
    full, _ = run(problem, output={"restore": stream})
    early, _ = run(problem, early="wmv", output={"restore": stream})
    want = full.streams[stream]["stopping"]["wmv"]
    b = full.stopping["wmv"]["iteration"]
    assert want["iteration"] == (b if stream == "average" else b // 2 * 2)
    assert early.streams[stream]["stopping"]["wmv"] == want
    assert early.restored_stream == stream and early.restored_from == {"rule": "wmv", "iteration": want["iteration"]}
    assert early.final["psnr"] == pytest.approx(want["psnr"], abs=1e-12)
    np.testing.assert_array_equal(early.image, early.stream_images[f"{stream}.wmv"])


def test_a_rules_choice_on_each_stream_is_that_streams_image_at_its_iteration(problem):
    """Logged every iteration, every stream's value at every iteration is in the curve: each
    rule's choice on each stream must be the curve's record at the chosen iteration."""
    r, stopping = run(problem, iterations=30, loop={"log_every": 1})
    checked = 0
    for s, prefix in (("perturbed", ""), ("clean", "clean_"), ("average", "average_")):
        by_it = {rec["iteration"]: rec for rec in r.curve}
        for rule in ("wmv", "emv", "discrepancy"):
            if int(stopping.rules[rule].best_it) < 0:
                continue
            c = r.streams[s]["stopping"][rule]
            assert c["iteration"] == int(stopping.rules[rule].best_it)
            assert c["psnr"] == pytest.approx(by_it[c["iteration"]][f"{prefix}psnr"], abs=1e-9)
            checked += 1
    assert checked >= 6  # wmv and emv take candidates in 30 iterations: not vacuous
    # perturbed-stream choices are the rules' own (the top-level "stopping", today's meaning)
    for rule in ("wmv", "emv"):
        assert r.streams["perturbed"]["stopping"][rule]["psnr"] == pytest.approx(r.stopping[rule]["psnr"])


class Kill(Callback):
    def __init__(self, at):
        self.at = at

    def on_checkpoint(self, iteration, path):
        if iteration == self.at:
            raise KeyboardInterrupt


def test_a_resumed_run_picks_the_same_iterations_as_an_uninterrupted_one(problem, tmp_path):
    full, _ = run(problem, iterations=40)
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        run(problem, loop={"checkpoint_every": 6}, checkpoint=ckpt, callbacks=[Kill(6)])  # inside WMV's patience
    state = torch.load(ckpt, weights_only=True)
    assert int(state["stopping"]["it"]) == 6 and state["stopping"]["wmv"]["buffer"].shape[0] == 3
    resumed, _ = run(problem, loop={"checkpoint_every": 6}, checkpoint=ckpt)
    assert resumed.stopping == full.stopping
    assert resumed.streams == full.streams  # the streams' rule candidates are in the checkpoint too
    np.testing.assert_array_equal(resumed.losses, full.losses)


@pytest.mark.parametrize("rule", RULES)
def test_every_stop_option_composes_and_plans(compose_config, rule):
    from bpdip.runner import plan_cell

    plan = plan_cell(compose_config("experiment=smoke", f"stop={rule}"))
    assert plan.stop.name == rule and not plan.stop.early
    assert plan.stop.effective(6)["wmv"] == {"window": 10, "patience": 10}  # 6 / 5000 of the reference: the floor


# --------------------------------------------------------------- bad input (issue 20, part 5)

BAD_STOP_AND_OUTPUT = [
    ("stop.discrepancy.tau=-1", "stop.discrepancy.tau must be a number > 0"),
    ("stop.discrepancy.tau=0", "stop.discrepancy.tau must be a number > 0"),
    ("stop.discrepancy.tau=abc", "stop.discrepancy.tau must be a number > 0"),
    ("stop.emv.alpha=2", r"stop.emv.alpha must be a number with 0 < alpha <= 1"),
    ("stop.emv.alpha=0", r"stop.emv.alpha must be a number with 0 < alpha <= 1"),
    ("stop.emv.patience=0", r"stop.emv.patience must be an integer >= 1"),
    ("stop.emv.start=-1", r"stop.emv.start must be an integer >= 0"),
    ("stop.wmv.window=0", r"stop.wmv.window must be an integer >= 1"),
    ("stop.wmv.window=2.5", r"stop.wmv.window must be an integer >= 1 .*got 2.5"),
    ("stop.wmv.patience=-5", r"stop.wmv.patience must be an integer >= 1 .*got -5"),
    ("stop.reference_iterations=0", r"stop.reference_iterations must be an integer >= 1"),
    ("stop.early=maybe", "stop.early must be true or false, got 'maybe'"),
    ("stop.name=nosuch", "stop=nosuch is not a stopping rule; choose one of"),
    ("+stop.patience=3", r"unknown stop.\* keys \['patience'\]"),
    ("+stop.wmv.size=3", r"unknown stop.wmv.\* keys \['size'\]; known: \['patience', 'window'\]"),
    ("output.restore=best", "output.restore must be one of perturbed, clean, average, got 'best'"),
    ("output.ema=1", r"output.ema must be a number with 0 <= ema < 1"),
    ("output.ema=-0.1", r"output.ema must be a number with 0 <= ema < 1"),
    ("output.ema=abc", r"output.ema must be a number with 0 <= ema < 1"),
    ("+output.stream=clean", r"unknown output.\* key\(s\) \['stream'\]"),
]


@pytest.mark.parametrize("override, message", BAD_STOP_AND_OUTPUT)
def test_bad_stop_and_output_values_fail_in_planning_with_one_line(compose_config, override, message):
    from bpdip.runner import UserError, plan_cell

    with pytest.raises(UserError, match=message) as info:
        plan_cell(compose_config("experiment=smoke", override))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("override, line", [
    ("stop.discrepancy.tau=-1", "error: stop.discrepancy.tau must be a number > 0 (the threshold in noise levels, "
                                "1.0), got -1"),
    ("output.restore=best", "error: output.restore must be one of perturbed, clean, average, got 'best'"),
])
def test_run_py_reports_bad_stop_and_output_values_as_one_error_line(tmp_path, override, line):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "run.py"), "experiment=smoke", override, "hydra.run.dir=job"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "BPDIP_RESULTS": str(tmp_path / "store")})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == line
    assert "Traceback" not in out.stderr and not (tmp_path / "store").exists()  # nothing trained


# --------------------------------------------------------------- issue 32: streams, guard, records

def test_the_warmup_guard_keeps_every_rule_from_choosing_early():
    from bpdip.stopping.base import warmup_start

    assert warmup_start(1500, 0.1, 50) == 150 and warmup_start(300, 0.1, 50) == 50
    assert warmup_start(30, 0.1, 50) == 29  # never past the last iteration
    assert StopSettings().first(1500) == 150  # the configured default
    seq = [1, 1, 1, 1, 4, 9, 2, 3, 3, 3, 3, 9, 1]  # var 0 in the first window: an early false minimum
    free, guarded = WMV(1, SHAPE, "cpu", window=3, patience=20), WMV(1, SHAPE, "cpu", window=3, patience=20, first=5)
    feed(free, images(seq)), feed(guarded, images(seq))
    assert int(free.best_it) == 2  # the false dip at the start
    assert int(guarded.best_it) == 9  # the first minimum at or after the guard: the window 3, 3, 3 at t = 7..9


def test_every_rule_on_the_average_stream_chooses_that_streams_image(problem):
    """Logged every iteration: each average-watching rule's choice is the curve's average
    PSNR at its iteration, its statistic is logged under average_<statistic>, and the
    perturbed rules are the same rules as before (their own choices)."""
    r, stopping = run(problem, iterations=30, loop={"log_every": 1})
    by_it = {rec["iteration"]: rec for rec in r.curve}
    assert set(r.choices) == {"perturbed", "clean", "average"}
    assert list(r.choices["average"]) == list(RULES) and list(r.choices["clean"]) == ["oracle", "fixed"]
    checked = 0
    for rule in ("wmv", "emv"):
        own = stopping.watching["average"][rule]
        assert own is not stopping.rules[rule]
        c = r.choices["average"][rule]
        if int(own.best_it) >= 0:
            assert c["iteration"] == int(own.best_it)
            assert c["psnr"] == pytest.approx(by_it[c["iteration"]]["average_psnr"], abs=1e-9)
            checked += 1
        p = r.choices["perturbed"][rule]
        assert p["psnr"] == pytest.approx(r.stopping[rule]["psnr"]) and p["iteration"] == r.stopping[rule]["iteration"]
    assert checked == 2
    for col in ("average_wmv_var", "average_emv", "average_residual", "fidelity", "average_fidelity"):
        assert col in r.curve[-1]
    assert r.curve[-1]["average_fidelity"] > 0 and r.curve[-1]["fidelity"] > 0
    assert r.choices["average"]["oracle"]["psnr"] == max(rec["average_psnr"] for rec in r.curve)
    assert r.restored == {"stream": "average", "rule": "fixed", "iteration": 30}


def test_stop_early_on_the_average_stream_returns_its_own_candidate(problem):
    settings = StopSettings(name="emv", stream="average", reference_iterations=40, early=True,
                            wmv={"window": 3, "patience": 4}, emv={"alpha": 0.1, "patience": 4, "start": 2},
                            warmup=NOGUARD)
    full, _ = run(problem, settings=settings)
    early, stopping = run(problem, settings=settings, early="average.emv")
    choice = full.choices["average"]["emv"]
    assert choice["stopped"] and early.stopped_early and early.iterations < full.iterations
    assert early.choices["average"]["emv"] == choice
    assert early.restored == {"stream": "average", "rule": "emv", "iteration": choice["iteration"]}
    assert early.final["psnr"] == pytest.approx(choice["psnr"])
    np.testing.assert_allclose(early.image, stopping.watching["average"]["emv"].candidate[0].clamp(0, 1)
                               .permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match="output.restore=average"):
        run(problem, settings=settings, early="average.emv", output={"restore": "clean"})


def test_the_stop_block_derives_from_the_rule_classes():
    """conf/stop/rules.yaml gives each built-in rule exactly its class's PARAMS, and StopSettings
    knows every rule's block (adding a rule: tests/test_extend.py)."""
    from pathlib import Path

    import yaml

    from bpdip.stopping import ONLINE, statistic_columns

    conf = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf/stop/rules.yaml").read_text())
    for name, klass in ONLINE.items():
        assert conf[name] == klass.PARAMS, name
        assert (Path(__file__).resolve().parents[1] / f"conf/stop/{name}.yaml").is_file()
    assert StopSettings.from_config(conf | {"name": "bp_discrepancy"}) == StopSettings(name="bp_discrepancy")
    assert len(set(statistic_columns())) == 2 * len(ONLINE)


def test_rule_classes_register_themselves_and_names_are_unique():
    """A subclass that sets ``name`` registers itself in base.REGISTRY (a shared base such as
    FirstCrossing does not); a second class of the same name is one clear error."""
    from bpdip.stopping import ONLINE
    from bpdip.stopping.base import REGISTRY, OnlineRule
    from bpdip.stopping.discrepancy import FirstCrossing

    assert list(ONLINE) == ["wmv", "emv", "discrepancy", "bp_discrepancy"]
    assert FirstCrossing not in REGISTRY.values() and set(REGISTRY) == set(ONLINE)
    with pytest.raises(TypeError, match="two stopping rules are named 'wmv'"):
        type("MyWMV", (OnlineRule,), {"name": "wmv"})
    assert REGISTRY["wmv"] is ONLINE["wmv"]


@pytest.mark.parametrize("cfg, message", [
    ({"name": "wmv", "streams": ["clean"]}, "stop.streams must be a list of distinct streams"),
    ({"name": "wmv", "stream": "clean"}, "stop.stream must be one of"),
    ({"name": "wmv", "early": True, "stream": "average", "streams": ["perturbed"]}, "is not among stop.streams"),
    ({"name": "wmv", "warmup": {"fraction": 1.5}}, "stop.warmup.fraction must be a number"),
    ({"name": "wmv", "warmup": {"floor": -1}}, "stop.warmup.floor must be an integer >= 0"),
    ({"name": "wmv", "bp_discrepancy": {"tau": 0}}, "stop.bp_discrepancy.tau must be a number > 0"),
])
def test_bad_stream_and_guard_settings_are_one_clear_line(cfg, message):
    with pytest.raises(ValueError, match=message) as err:
        StopSettings.from_config(cfg)
    assert "\n" not in str(err.value)


def test_an_older_metrics_csv_without_the_new_statistics_still_reads(tmp_path):
    from bpdip.records import (
        CURVE_COLUMNS, CURVE_COLUMNS_V2, STREAM_COLUMNS, CorruptRecord, read_metrics_csv, write_metrics_csv,
    )

    old = tmp_path / "old.csv"  # a schema-3 file of RESULTS_VERSION 3: no fidelity, no average_* statistics
    header = [*CURVE_COLUMNS_V2, *STREAM_COLUMNS]
    old.write_text(",".join(header) + "\n" + ",".join(["face", "0", *["0.5"] * (len(header) - 2)]) + "\n")
    [row] = read_metrics_csv(old)
    assert row["average_psnr"] == 0.5 and "average_fidelity" not in row
    new = tmp_path / "new.csv"
    write_metrics_csv(new, [{"image": "face", "iteration": 0, "average_fidelity": 2.5}])
    assert read_metrics_csv(new)[0]["average_fidelity"] == 2.5 and "average_fidelity" not in CURVE_COLUMNS
    # a statistic of a rule added later (one module and one config) reads too; a mangled header does not
    later = tmp_path / "later.csv"
    write_metrics_csv(later, [{"image": "face", "iteration": 0, "average_fidelity": 2.5, "average_newrule_stat": 1.0}])
    assert read_metrics_csv(later)[0]["average_newrule_stat"] == 1.0
    bad = tmp_path / "bad.csv"
    bad.write_text(later.read_text().replace("average_newrule_stat", "average fidelity"))
    with pytest.raises(CorruptRecord):
        read_metrics_csv(bad)
