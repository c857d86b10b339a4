"""Nothing a run computes changed when issue 28 reshaped the loop and the runner (``restore(model,
loss, data, spec)``, the per-run state object, the job context, the image degraded once per job).

Each case is a tiny real job (experiment=smoke: two 40 px crops, the slim net, 6 iterations)
whose run ids, metrics.csv rows and summary.json entries were recorded by the code before that
change (commit fad42bf, CPU, torch 2.13, ``python run.py experiment=smoke threads=1 ...`` with
the case's overrides) in tests/fixtures/same_results/<case>.json. Wall times aside, every value
must be the same: floats to 1e-12 relative (a few units in the last place), except BM3D's,
which differ from run to run of the same code (up to 1.5e-6 relative, measured) and are held
to 1e-4. Regenerate a fixture only for a change that means to alter results (and bump
bpdip.store.RESULTS_VERSION): ``python tests/test_same_results.py <job dir> <case>``.
"""

import csv
import json
import math
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "same_results"
BASE = ("experiment=smoke", "threads=1")
CASES = {
    # boundary=valid (the frame, CG state), BP-TV, every deblurring baseline on y's frame
    "valid_bptv": ("boundary=valid", "loss=bp_tv"),
    # super-resolution: psnr_y, the bicubic baseline on the HR truth
    "sr": ("task=sr",),
    # two images trained as one stacked group, under valid
    "stack2_valid": ("engine.stack=2", "boundary=valid"),
    # stop.early: ES-WMV ends the run at its stop and its candidate is the restored image
    "wmv_early": ("data.images=[face]", "loss.iterations=60", "stop=wmv", "stop.early=true",
                  "stop.reference_iterations=60", "stop.wmv.window=3", "stop.wmv.patience=6",
                  "stop.warmup.floor=0", "stop.warmup.fraction=0"),
}
WALL_TIME = {"runtime_s", "seconds_per_iteration", "seconds"}


def _number(value):
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def snapshot(job: Path) -> dict:
    """What the job computed: per image its run id, summary entry and metrics rows, wall
    times left out."""
    summary = json.loads((job / "summary.json").read_text())
    with (job / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    images = {}
    for name, entry in summary["images"].items():
        images[name] = {
            "run_id": entry["run_id"],
            "entry": {k: v for k, v in entry.items() if k not in WALL_TIME and k != "run_id"},
            "rows": [{k: v for k, v in r.items() if k not in WALL_TIME} for r in rows if r["image"] == name],
        }
    return {"images": images}


def _differences(want, got, path="", rel=1e-12) -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        if set(want) != set(got):
            return [f"{path}: keys {sorted(set(want) ^ set(got))}"]
        rel_here = 1e-4 if str(want.get("method", "")).startswith("bm3d") else rel
        return [d for k in want for d in _differences(want[k], got[k], f"{path}.{k}", rel_here)]
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(want)} items, now {len(got)}"]
        return [d for i, (a, b) in enumerate(zip(want, got)) for d in _differences(a, b, f"{path}[{i}]", rel)]
    a, b = _number(want), _number(got)
    if isinstance(a, float) and isinstance(b, float):
        if (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rel, abs_tol=0.0):
            return []
    elif a == b:
        return []
    return [f"{path}: {want!r}, now {got!r}"]


@pytest.mark.parametrize("case", list(CASES))
def test_a_tiny_job_computes_what_it_did_before_the_refactor(compose_config, tmp_path, case):
    from bpdip.runner import run_cell

    want = json.loads((FIXTURES / f"{case}.json").read_text())
    cfg = compose_config(*BASE, *CASES[case], f"results_root={tmp_path / 'store'}")
    run_cell(cfg, tmp_path / "job")
    got = snapshot(tmp_path / "job")
    assert {n: i["run_id"] for n, i in got["images"].items()} == {n: i["run_id"] for n, i in want["images"].items()}
    differences = _differences(want, got)
    assert not differences, "\n".join(differences[:20])


@pytest.mark.parametrize("task", ["deblur", "sr"])
def test_each_image_is_degraded_once_per_job(compose_config, tmp_path, monkeypatch, task):
    """The loop's tensors, the baselines (deblurring's, SR's bicubic) and the input's record
    all take the one Observation of the image: the file is read and degraded once per job,
    also by a job that takes the images from the store."""
    import bpdip.runner.cell as cell

    calls = []
    real = cell.degraded
    monkeypatch.setattr(cell, "degraded", lambda plan, t: calls.append(t.name) or real(plan, t))
    cfg = compose_config(*BASE, f"task={task}", "loss.iterations=2", f"results_root={tmp_path / 'store'}")
    trained = cell.run_cell(cfg, tmp_path / "job1")
    assert sorted(calls) == ["comic", "face"] and not any(e["reused"] for e in trained["images"].values())
    calls.clear()
    reused = cell.run_cell(cfg, tmp_path / "job2")
    assert sorted(calls) == ["comic", "face"] and all(e["reused"] for e in reused["images"].values())
    assert {n: e["input"] for n, e in reused["images"].items()} == {n: e["input"] for n, e in trained["images"].items()}

if __name__ == "__main__":  # python tests/test_same_results.py <job dir> <case>: write the fixture
    job, case = Path(sys.argv[1]), sys.argv[2]
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / f"{case}.json").write_text(json.dumps(snapshot(job), indent=1, sort_keys=True) + "\n")
