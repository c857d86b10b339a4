"""scripts/bench.py --baselines (issue 30): a seconds-long smoke run of the baselines' cost
rows; the numbers themselves are measured at 96 px (results/bench/cpu-baselines.json)."""

import json



def test_baseline_rows_time_bm3d_valid_rl_and_a_records_baselines(tmp_path, bench):
    out = tmp_path / "b.json"
    report = bench.main(["--device", "cpu", "--baselines", "--baselines-sizes", "24", "--rounds", "2",
                         "--out", str(out)])
    rows = {r["what"]: r for r in report["baselines"]}
    assert {"bm3d", "bm3d_extended", "richardson_lucy_valid", "all, circular", "all, valid"} <= set(rows)
    assert rows["bm3d"]["boundary"] == "circular" and rows["all, valid"]["boundary"] == "valid"
    for r in rows.values():
        assert r["size"] == 24 and len(r["wall_s_rounds"]) == 2 and r["wall_s"] > 0 and r["cpu_s"] > 0
    # a record's baselines include BM3D: together they cost at least BM3D alone (to the rounds' noise)
    assert rows["all, circular"]["cpu_s"] > 0.5 * rows["bm3d"]["cpu_s"]
    assert json.loads(out.read_text())["baselines"][0]["what"] == "bm3d"
