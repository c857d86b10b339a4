"""docs/extending.md works as written: its module and configs, copied from the page,
give a new fidelity and kernel that run through run.py, the store and the report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bpdip.losses import BP, LS, make_loss
from bpdip.models import build_model
from bpdip.physics import Blur, make_kernel
from bpdip.registry import resolve

ROOT = Path(__file__).resolve().parents[1]


def page_blocks(lang: str, first_line: str) -> str:
    page = (ROOT / "docs" / "extending.md").read_text()
    blocks = [b.split("```", 1)[0] for b in page.split(f"```{lang}\n")[1:]]
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    """The page's myext.py and myconf/ in a fresh folder, importable as ``myext``."""
    root = tmp_path_factory.mktemp("ext")
    (root / "myext.py").write_text(page_blocks("python", "# myext.py\n"))
    for group, name in (("loss", "power_bp"), ("kernel", "motion")):
        (root / "myconf" / group).mkdir(parents=True, exist_ok=True)
        (root / "myconf" / group / f"{name}.yaml").write_text(page_blocks("yaml", f"# myconf/{group}/{name}.yaml\n"))
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    sys.modules.pop("myext", None)


def test_the_docs_fidelity_spans_ls_to_bp(ext):
    """PowerBP at p = 0 is LS and at p = 1 is BP with eps1 = 0 (eq. 10), evaluated through
    make_loss by import path, against the built-in classes on a random problem."""
    g = torch.Generator().manual_seed(0)
    blur = Blur(make_kernel("gaussian"), (21, 19))
    y, x = torch.rand(1, 3, 21, 19, generator=g), torch.rand(2, 3, 21, 19, generator=g)
    ls = LS(blur, y)(x)
    bp = BP(blur, y, sigma=0.01, eps1=0.0, eps2=1e-3)(x)
    p0 = make_loss("myext.PowerBP", blur, y, 0.01, p=0.0, eps=1e-3)(x)
    p1 = make_loss("myext:PowerBP", blur, y, 0.01, p=1.0, eps=1e-3)(x)
    torch.testing.assert_close(p0, ls, rtol=1e-5, atol=0)
    torch.testing.assert_close(p1, bp, rtol=1e-5, atol=0)
    assert not torch.allclose(make_loss("myext.PowerBP", blur, y, 0.01)(x), bp)  # p = 0.5 is neither


def test_the_docs_kernel_is_validated_and_normalised(ext):
    k = make_kernel("myext.motion", size=7)
    want = np.zeros((7, 7))
    want[3] = 1 / 7
    np.testing.assert_allclose(k, want)


def test_bad_import_paths_fail_in_one_clear_line(ext):
    cases = [
        (lambda: make_loss("l2", None, None, 0.0), "unknown loss.fidelity 'l2'; choose one of"),
        (lambda: make_kernel("nosuchpkg.motion"), "cannot import 'nosuchpkg'; put its folder on PYTHONPATH"),
        (lambda: make_kernel("myext.blur"), "module 'myext' has no attribute 'blur'"),
        (lambda: build_model("myext.np"), "is a module, not a class or function"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")) as info:
            call()
        assert "\n" not in str(info.value)
    assert resolve({"a": len}, "a", "x") is len


def test_the_docs_sweep_runs_and_reports(ext, tmp_path):
    """The page's command (smoke-sized) trains the new cells, stores them, and the report
    lists them beside the paper's."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ext), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "--config-dir", str(ext / "myconf"),
           "kernel=motion,uniform", "loss=power_bp", "experiment=smoke", "data.images=[face]",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", f"results_root={tmp_path / 'store'}"]
    out = subprocess.run(cmd, cwd=ext, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    cells = {}
    for job in (tmp_path / "sweep").iterdir():
        if job.is_dir() and job.name != "report":  # the sweep's own report sits beside its jobs
            summary = json.loads((job / "summary.json").read_text())
            cells[summary["run"]["cell"]["kernel"]] = summary
    assert set(cells) == {"myext.motion", "uniform"}
    for summary in cells.values():
        assert summary["run"]["cell"]["loss"] == "power_bp"
        assert summary["images"]["face"]["status"] == "complete"
    assert "p: 0.5" in next((tmp_path / "sweep").glob("*motion*/config.yaml")).read_text()
    # the two kernels give different data, hence different curves
    assert cells["myext.motion"]["images"]["face"]["final_psnr"] != cells["uniform"]["images"]["face"]["final_psnr"]
    report = subprocess.run([sys.executable, "-m", "bpdip.report", str(tmp_path / "sweep"), "--out",
                             str(tmp_path / "report")], cwd=ext, env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "power_bp" in text and "myext.motion" in text


def test_editing_an_extension_changes_its_run_ids(ext, tmp_path, monkeypatch):
    """The store must not reuse records of an extension's old code: its source file's
    SHA-256 is part of the run id (built-in names keep their ids)."""
    from hydra import compose, initialize_config_dir

    from bpdip.runner.plan import plan_cell

    source = tmp_path / "myext_edit.py"
    source.write_text((ext / "myext.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))

    def ids(kernel):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=["experiment=smoke", "data.images=[face]", f"kernel.name={kernel}"])
        plan = plan_cell(cfg)
        return plan.tasks[0].run_id, plan.result_config.get("extension_sha256")

    before, fingerprint = ids("myext_edit.motion")
    assert set(fingerprint) == {"kernel.name"}
    assert ids("myext_edit.motion")[0] == before  # stable
    source.write_text(source.read_text() + "\n# an edit\n")
    after, _ = ids("myext_edit.motion")
    assert after != before
    assert ids("uniform")[1] is None  # the paper's options carry no fingerprint


def test_the_docs_stopping_rule_is_one_module_and_one_config(tmp_path):
    """docs/stopping.md "Adding a rule": its module, dropped into a copy of bpdip/stopping/, and
    its config, into a copy of conf/stop/, and nothing else: run.py follows the new rule with
    stop.early (its statistic in metrics.csv, its choice in summary.json, its parameter set with
    '+'), and the report's stopping table has its column."""
    import shutil

    page = (ROOT / "docs" / "stopping.md").read_text()

    def block(lang, first):
        (b,) = [b.split("```", 1)[0] for b in page.split(f"```{lang}\n")[1:] if b.startswith(first)]
        return b

    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "bpdip", copy / "bpdip", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "conf", copy / "conf")
    shutil.copy(ROOT / "run.py", copy / "run.py")
    (copy / "data").symlink_to(ROOT / "data")
    (copy / "bpdip" / "stopping" / "residual_min.py").write_text(block("python", "# residual_min.py, in bpdip/"))
    (copy / "conf" / "stop" / "residual_min.yaml").write_text(block("yaml", "# residual_min.yaml, in conf/"))
    env = {**os.environ, "PYTHONPATH": str(copy)}
    run = tmp_path / "run"
    # a large step makes the residual wander, so that a patience of 2 ends the run
    cmd = [sys.executable, "run.py", "experiment=smoke", "data.images=[face]", "loss.iterations=40", "optim.lr=0.2",
           "stop=residual_min", "stop.early=true", "+stop.residual_min.patience=2", "stop.warmup.floor=0",
           "stop.reference_iterations=40", f"hydra.run.dir={run}", "results_root=null"]
    out = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    entry = summary["images"]["face"]
    choice = entry["choices"]["perturbed"]["residual_min"]
    assert entry["restored"]["rule"] == "residual_min" and entry["restored"]["iteration"] == choice["iteration"]
    # patience 2 (not PARAMS' 1000): the stop two iterations after the minimum ends training
    assert choice["stopped"] and choice["stop_iteration"] == choice["iteration"] + 2
    assert entry["iterations"] == choice["stop_iteration"] + 1 < 40
    assert "residual_min" in (run / "metrics.csv").read_text().splitlines()[0].split(",")
    report = subprocess.run([sys.executable, "-m", "bpdip.report", str(run), "--out", str(tmp_path / "report"),
                             "--no-figure"], cwd=copy, env=env, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "residual_min" in (tmp_path / "report" / "stopping.csv").read_text()
