"""``threads: auto`` (issue 29): the rule's logic (bpdip.runner.threads), not its timing; the
measurements behind it are scripts/bench.py --threads-row (results/bench/cpu-threads.json)."""

import json

import pytest
import torch

from bpdip.loop import Callback
from bpdip.runner import plan_cell, run_cell
from bpdip.runner.cell import job_threads
from bpdip.runner.threads import AUTO_MIN_WORK, auto_threads, resolve_threads, usable_cores

PAPER, SMALL = 2_217_831, 34_627  # parameters of the paper's net and of model=small


def test_auto_is_one_thread_for_small_work_whatever_the_machine():
    for cores, load in [(2, 0.0), (64, 0.0), (2, 5.0)]:
        assert auto_threads("cpu", SMALL, 96 * 96, cores, load) == 1
    assert SMALL * 96 * 96 < AUTO_MIN_WORK <= PAPER * 128 * 128


def test_auto_uses_the_free_cores_for_big_work():
    big = 256 * 256
    assert auto_threads("cpu", PAPER, big, cores=2, load=0.2) == 2  # a quiet 2-core machine
    assert auto_threads("cpu", PAPER, big, cores=2, load=1.2) == 1  # one other busy process
    assert auto_threads("cpu", PAPER, big, cores=2, load=5.4) == 1  # never below 1
    assert auto_threads("cpu", PAPER, big, cores=16, load=3.4) == 13
    assert auto_threads("cpu", PAPER, big, cores=16, load=3.6) == 12  # the load rounded to the nearest
    assert auto_threads("cpu", PAPER, big, cores=8, load=float("nan")) == 8  # no load figure: all cores


def test_auto_leaves_torchs_default_on_a_gpu_and_resolve_passes_numbers_through():
    assert auto_threads("cuda", PAPER, 512 * 512, cores=8, load=0.0) is None
    assert resolve_threads(None, "cpu", PAPER, 1) is None and resolve_threads(3, "cpu", 1, 1) == 3
    assert resolve_threads("auto", "cpu", SMALL, 96 * 96) == 1
    assert usable_cores() >= 1


def test_auto_is_the_default_and_a_job_sets_it_and_puts_torchs_back(compose_config, tmp_path):
    cfg = compose_config("experiment=smoke", "data.images=[face]", "loss.iterations=2", "threads=auto",
                         "results_root=null", "baselines=false")
    assert compose_config()["threads"] == "auto"
    plan = plan_cell(cfg)
    assert job_threads(plan, "cpu") == 1  # the slim net at 40 px: small work
    assert job_threads(plan_cell(compose_config("experiment=smoke", "threads=null")), "cpu") is None
    assert job_threads(plan_cell(compose_config("experiment=smoke", "threads=2")), "cpu") == 2

    class Seen(Callback):
        threads = []

        def on_log(self, result, record):
            self.threads.append(torch.get_num_threads())

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_cell(cfg, tmp_path, callbacks=[Seen()])
        assert set(Seen.threads) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_threads_row_times_whole_runs_quiet_and_busy(tmp_path, bench):
    out = tmp_path / "t.json"
    report = bench.main(["--threads-row", "--threads-problems", "slim:16:3", "--out", str(out)])
    quiet, busy = report["threads_rows"]
    assert (quiet["load"], busy["load"]) == ("quiet", "busy") and quiet["threads"] == [1, 2]
    for row in (quiet, busy):
        [r] = row["rounds"]
        assert r["1"]["last_iteration"] == r["2"]["last_iteration"] == 2  # whole runs, last iteration logged
        assert r["1"]["wall_s"] > r["1"]["train_s"] > 0  # the process costs more than its training
        assert row["ratio_wall_s"] == pytest.approx(r["2"]["wall_s"] / r["1"]["wall_s"])
        assert row["cpu_count"] >= 1 and r["load_average_before"] is not None
    assert json.loads(out.read_text())["threads_rows"][1]["load"] == "busy"
