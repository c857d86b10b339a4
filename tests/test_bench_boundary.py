"""scripts/bench.py --boundary (issue 19): a seconds-long smoke run of the valid-vs-circular
step timing; the numbers themselves are measured by the lead at full size."""

import json



def test_boundary_rows_time_both_models_and_count_cg_iterations(tmp_path, bench):
    out = tmp_path / "b.json"
    report = bench.main(["--device", "cpu", "--boundary", "--boundary-sizes", "slim:17", "--steps", "2",
                         "--boundary-tols", "1e-6,1e-2", "--rounds", "2", "--out", str(out)])
    circ, tight, loose = report["boundary"]
    # two alternated rounds: the ratio is the median (here the mean) of the two rounds' ratios
    assert len(tight["round_ratios"]) == 2 and tight["ratio_to_circular"] == sum(tight["round_ratios"]) / 2
    assert circ["boundary"] == "circular" and circ["x_size"] == [17, 17] and circ["cg_iterations_mean"] is None
    assert tight["x_size"] == [31, 31] and tight["cg_tol"] == 1e-6 and tight["ratio_to_circular"] > 0
    # a looser tolerance never needs more iterations (same problem, same warm starts)
    assert 1 <= loose["cg_iterations_mean"] <= tight["cg_iterations_mean"]
    assert json.loads(out.read_text())["boundary"][1]["meets_target"] in (True, False)


def test_accuracy_rows_replay_a_runs_residuals_and_a_tighter_tolerance_is_more_exact(tmp_path, bench):
    out = tmp_path / "a.json"
    report = bench.main(["--device", "cpu", "--boundary", "--boundary-accuracy", "--boundary-sizes", "slim:17",
                         "--steps", "3", "--boundary-tols", "1e-8,1e-2", "--out", str(out)])
    tight, loose = report["accuracy"]
    assert tight["solves"] == loose["solves"] == 7  # 2 * steps + 1 iterations, one solve each
    assert loose["cg_iterations_mean"] < tight["cg_iterations_mean"]
    # exact to the tolerance: at 1e-8 both errors are far below the loose solve's, which is not exact
    assert tight["value_rel_error_max"] < 1e-6 and tight["gradient_rel_error_max"] < 1e-5
    assert loose["value_rel_error_max"] > 10 * tight["value_rel_error_max"]
    assert loose["gradient_rel_error_max"] > 10 * tight["gradient_rel_error_max"]
    assert json.loads(out.read_text())["accuracy"][0]["cg_tol"] == 1e-8
