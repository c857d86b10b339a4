"""Config composition: the 36 cells of Table I resolve to PROTOCOL's values, and bad
choices fail clearly before any training."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bpdip.data import SET14
from bpdip.models import build_model, count_parameters
from bpdip.runner import UserError, plan_cell

ROOT = Path(__file__).resolve().parents[1]

# PROTOCOL "Losses" and "Optimisation", written out independently of conf/.
ITERATIONS = {"ls": 10000, "ls_tv": 10000, "bp": 7000, "bp_tv": 7000}
FIDELITY = {"ls": "ls", "ls_tv": "ls", "bp": "bp", "bp_tv": "bp"}
TV_WEIGHT = {("ls", k): 0.0 for k in ("uniform", "radial", "gaussian")}
TV_WEIGHT.update({("bp", k): 0.0 for k in ("uniform", "radial", "gaussian")})
TV_WEIGHT.update({("bp_tv", k): 1e-3 for k in ("uniform", "radial", "gaussian")})
TV_WEIGHT.update({("ls_tv", "uniform"): 1e-6, ("ls_tv", "radial"): 1e-5, ("ls_tv", "gaussian"): 1e-5})


def _kernel(name):
    """Paper Sec. IV kernels, from the formulas (not from bpdip.physics)."""
    if name == "uniform":
        return np.full((9, 9), 1 / 81)
    x1, x2 = np.meshgrid(np.arange(-7, 8), np.arange(-7, 8), indexing="ij")
    k = 1 / (1 + x1**2 + x2**2) if name == "radial" else np.exp(-(x1**2 + x2**2) / (2 * 1.6**2))
    return k / k.sum()


@pytest.fixture(scope="module")
def cfg_of(compose_config):
    return compose_config


def table1_overrides(cfg_of, preset="table1"):
    params = cfg_of(f"experiment={preset}", return_hydra_config=True).hydra.sweeper.params
    axes = [[f"{key}={v}" for v in str(values).split(",")] for key, values in params.items()]
    return [list(c) for c in itertools.product(*axes)]


def test_the_36_cells_resolve_to_protocol_values(cfg_of):
    cells = table1_overrides(cfg_of)
    assert len(cells) == 36
    seen = set()
    for overrides in cells:
        cfg = cfg_of(*overrides)
        kernel, loss, var = cfg.kernel.name, cfg.loss.name, cfg.noise.var
        seen.add((kernel, float(var), loss))
        assert cfg.loss.iterations == ITERATIONS[loss]
        assert cfg.loss.fidelity == FIDELITY[loss]
        assert cfg.loss.tv_weight == pytest.approx(TV_WEIGHT[(loss, kernel)], rel=0, abs=1e-15)
        if FIDELITY[loss] == "bp":
            assert (cfg.loss.eps1, cfg.loss.eps2) == (0.01, 1e-3)
        else:
            assert "eps1" not in cfg.loss and "eps2" not in cfg.loss
        assert cfg.log_every == 100 and cfg.optim.lr == 0.01 and cfg.optim.reg_noise_std == 0.03
        assert cfg.logger.name == "none" and list(cfg.data.images) == [] and cfg.data.crop is None
    assert seen == set(itertools.product(("uniform", "radial", "gaussian"), (0.3, 2.0, 4.0),
                                         ("ls", "ls_tv", "bp", "bp_tv")))


def test_per_image_split_expands_to_504_jobs(cfg_of):
    cells = table1_overrides(cfg_of, "table1_per_image")
    assert len(cells) == 36 * 14
    assert {o[-1].split("=")[1] for o in cells} == set(SET14)


def test_default_is_one_table1_cell_on_set14_with_the_paper_network(cfg_of):
    cfg = cfg_of()
    assert (cfg.kernel.name, cfg.noise.var, cfg.loss.name) == ("uniform", 0.3, "bp")
    plan = plan_cell(cfg)
    assert [t.name for t in plan.tasks] == sorted(SET14)
    assert plan.cell == {"kernel": "uniform", "noise_var": 0.3, "loss": "bp"}
    assert count_parameters(build_model(**plan.model_params)) == 2_217_831  # PROTOCOL "Network"
    assert plan.sigma == pytest.approx(np.sqrt(0.3) / 255)
    assert plan.settings.iterations == 7000 and plan.settings.input_depth == 32
    np.testing.assert_allclose(plan.kernel, _kernel("uniform"), rtol=1e-12)


@pytest.mark.parametrize("name", ["radial", "gaussian"])
def test_kernel_group_gives_the_paper_kernels(cfg_of, name):
    plan = plan_cell(cfg_of(f"kernel={name}", "data.images=[face]"))
    np.testing.assert_allclose(plan.kernel, _kernel(name), rtol=1e-12)


def test_image_selection_and_crop(cfg_of):
    plan = plan_cell(cfg_of("data.images=[face,comic]", "data.crop=40"))
    assert [(t.name, t.shape) for t in plan.tasks] == [("face", (40, 40)), ("comic", (40, 40))]
    assert [t.name for t in plan_cell(cfg_of("data.images=zebra")).tasks] == ["zebra"]  # one name


def test_user_folder_of_images(cfg_of, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for n in ("b", "a"):
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(tmp_path / f"{n}.png")
    plan = plan_cell(cfg_of("data=folder", f"data.folder={tmp_path}"))
    assert [(t.name, t.shape) for t in plan.tasks] == [("a", (48, 40)), ("b", (48, 40))]


def test_kernel_file(cfg_of, tmp_path):
    k = np.arange(1.0, 10.0).reshape(3, 3)
    np.save(tmp_path / "k.npy", k)
    plan = plan_cell(cfg_of("kernel=file", f"kernel.path={tmp_path / 'k.npy'}", "data.images=[face]"))
    np.testing.assert_allclose(plan.kernel, k / k.sum())
    with pytest.raises(UserError, match="kernel.path"):
        plan_cell(cfg_of("kernel=file", "data.images=[face]"))


@pytest.mark.parametrize("override, message", [
    ("noise.var=-1", "noise.var must be a finite number >= 0"),
    ("data.images=[face,nosuch]", "image 'nosuch' not found"),
    ("loss.tv_weight=-0.1", "tv_weight must be >= 0"),
    ("data.crop=8", "too small"),
    ("device=cuda", "device=cuda: .*no CUDA GPU is visible"),  # the suite hides GPUs (conftest)
    ("device=tpu9", "device=tpu9: "),
])
def test_bad_values_fail_with_one_clear_line(cfg_of, override, message):
    with pytest.raises(UserError, match=message) as info:
        plan_cell(cfg_of("experiment=smoke", override))
    assert "\n" not in str(info.value)


def _run(tmp_path, *args):
    env = {**os.environ, "BPDIP_RESULTS": str(tmp_path / "store")}
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_unknown_choice_lists_the_valid_ones_in_one_line(tmp_path):
    out = _run(tmp_path, "kernel=foo")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("error: kernel=foo is not an option of config group 'kernel'; use one of: ")
    listed = line.split("use one of: ")[1].split(" (conf/")[0].split(", ")
    # the paper's kernels, a file, the super-resolution kernels (task=sr) and issue 19's shake (motion) blur, issue 32's defocus disk
    assert set(listed) == {"file", "gaussian", "radial", "uniform", "bicubic", "lanczos2", "shake", "disk"}


@pytest.mark.parametrize("argv, message", [
    (["-m", "loss=bp,nosuch"], "loss=nosuch is not an option of config group 'loss'"),
    (["experiment=tabel1"], "experiment=tabel1 is not an option of config group 'experiment'"),
    (["+kernel=foo"], "kernel=foo is not an option"),
    (["kernel=gaussian", "loss=bp", "kernel.size=9", "seed=3", "hydra/launcher=nosuch", "loss=choice(bp,x)"], None),
    (["--config-dir", str(ROOT / "conf" / "README.md"), "kernel=nosuch"], "kernel=nosuch is not an option"),
    (["hydra.searchpath=[pkg://mine]", "kernel=mine"], None),
])
def test_bad_choice_reads_group_overrides_only(argv, message):
    from bpdip.cli import bad_choice

    got = bad_choice(argv, ROOT / "conf")
    assert (got is None) if message is None else (message in got and "\n" not in got)


def test_bad_choice_reads_a_users_config_dir(tmp_path):
    from bpdip.cli import bad_choice

    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / "motion.yaml").write_text("name: motion\n")
    assert bad_choice(["-m", "--config-dir", str(tmp_path), "kernel=motion,uniform"], ROOT / "conf") is None
    assert bad_choice([f"-cd={tmp_path}", "kernel=motion"], ROOT / "conf") is None
    assert "use one of: bicubic, disk, file, gaussian, lanczos2, motion," in bad_choice(
        ["--config-dir", str(tmp_path), "kernel=blur"], ROOT / "conf")


def test_missing_image_fails_before_training(tmp_path):
    out = _run(tmp_path, "experiment=smoke", "data.images=[face,nosuch]", "hydra.run.dir=job")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error: image 'nosuch' not found") and "known names:" in lines[-1]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "job" / "metrics.csv").exists()  # nothing trained, not even face
    assert not (tmp_path / "store").exists()


def test_a_sweep_preset_without_multirun_says_how_to_run_it(tmp_path):
    out = _run(tmp_path, "experiment=table1", "hydra.run.dir=job")
    assert out.returncode == 2
    assert "add -m" in out.stderr and "python run.py -m experiment=table1" in out.stderr


def test_help_says_what_a_job_does_and_lists_every_group():
    out = subprocess.run([sys.executable, str(ROOT / "run.py"), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("bpdip: BP-DIP")
    for group in sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name != "hydra"):
        assert f"\n{group}: " in out.stdout, group  # Hydra's list of the options of each group
    assert "python run.py -m experiment=table1 hydra/launcher=slurm" in out.stdout


def _bad_files(tmp_path: Path) -> None:
    """The files issue 29's bad inputs name: a kernel with negative entries that sums to 1,
    a 2x2 PNG, a file where a folder is expected, a 32-bit float TIFF."""
    from PIL import Image

    np.save(tmp_path / "signed.npy", np.array([[0, -0.5, 0], [-0.5, 3, -0.5], [0, -0.5, 0]]))
    Image.fromarray(np.full((2, 2, 3), 128, np.uint8)).save(tmp_path / "tiny.png")
    (tmp_path / "a_file").write_text("not a folder")
    Image.fromarray(np.full((48, 48), 0.5, np.float32)).save(tmp_path / "float.tif")


# issue 29: each was silently accepted, a traceback, or vague before
@pytest.mark.parametrize("args, message", [
    (["checkpoint_every=-1"], "checkpoint_every must be an integer >= 0 (iterations between checkpoints; 0: none), got -1"),
    (["threads=0"], "threads must be an integer >= 1 (torch CPU threads per job; null: torch's default, or auto), got 0"),
    (["threads=-2"], "threads must be an integer >= 1"),
    (["kernel=file", "kernel.path=signed.npy"], "kernel file {d}/signed.npy: 4 entries are negative (smallest -0.5); "
                                                 "a blur kernel must be non-negative"),
    (["results_root=/proc/forbidden"], "results_root=/proc/forbidden cannot be written"),
    (["results_root=a_file"], "is a file, not a folder; set results_root (or BPDIP_RESULTS) to a folder"),
    (["data=observed", "data.path=tiny.png", "data.crop=null", "kernel=gaussian", "model=skip"],
     "image tiny is 2x2 ({d}/tiny.png); under boundary=valid the network restores it grown by the 15x15 kernel's "
     "reach to 16x16: image 16x16 is too small for a 5-scale network"),
    (["data.images=[tiny.png]", "data.crop=null"], "image 2x2 is too small for a 3-scale network"),
    (["seed=abc"], "seed must be an integer (the run seed), got 'abc'"),
    (["data.images=[float.tif]", "data.crop=null"], "image {d}/float.tif cannot be read at its full bit depth"),
])
def test_bad_input_is_one_error_line_before_anything_is_written(tmp_path, args, message):
    _bad_files(tmp_path)
    store = tmp_path / "store"
    (store / "kept").mkdir(parents=True)
    (store / "kept" / "summary.json").write_text("{}")  # a record already there stays as it is
    out = _run(tmp_path, "experiment=smoke", *args, "hydra.run.dir=job")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("error: ") and message.format(d=tmp_path) in line, line
    job = tmp_path / "job"
    assert not (job / "summary.json").exists() and not (job / "metrics.csv").exists()  # no "running" record
    assert sorted(p.name for p in store.rglob("*")) == ["kept", "summary.json"]
    assert (store / "kept" / "summary.json").read_text() == "{}"


def test_value_checks_accept_what_the_config_allows():
    from bpdip.runner.checks import check_threads, integer

    assert [check_threads(v) for v in (None, 1, 4, "auto")] == [None, 1, 4, "auto"]  # auto: issue 29's threads
    assert integer(3.0, "seed") == 3 and integer(-7, "seed") == -7  # any integer seeds a run
    for bad in (True, 1.5, "2", 0):
        with pytest.raises(ValueError, match="threads must be an integer >= 1"):
            check_threads(bad)
    with pytest.raises(ValueError, match="seed must be an integer, got 1.5"):
        integer(1.5, "seed")
