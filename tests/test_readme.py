"""The README never lies: CI runs exactly the commands it shows."""

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def ci_commands() -> list[str]:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    # apt-get lines install system packages for optional checks, outside the README's set-up
    return [ln.strip() for ln in lines
            if ln.strip() and not ln.lstrip().startswith(("#", "set ", "cd ", "export ", "apt-get "))]


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    commands = ci_commands()
    assert len(commands) == 2, commands  # install + main job, then the tests
    for cmd in commands:
        assert f"\n{cmd}\n" in readme, f"README lacks the CI command: {cmd}"


# the entry points and data the README's commands use: each must be named there and exist
README_PATHS = ("run.py", "scripts/make_report.py", "scripts/bench.py", "data/Set14/")
# prefixes of the repository's own tree (outputs/, results/... are written by runs)
SOURCE_TREE = r"(?<![\w/.-])((?:bpdip|scripts|conf|tests|data|\.ci)/[\w./-]*[\w/])"


def test_readme_commands_use_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    for path in README_PATHS:
        assert path in readme, f"README no longer mentions {path}"
        assert (ROOT / path).exists(), f"README mentions {path}, which does not exist"
    # README says Set14 is shipped checksummed
    assert (ROOT / "data" / "Set14" / "SHA256SUMS").is_file()
    # every path into the source tree that the README names exists
    named = set(re.findall(SOURCE_TREE, readme))
    assert len(named) >= 10, named  # the module table alone names more
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"README names paths that do not exist: {missing}"


def test_readme_python_example_runs(capsys):
    from skimage.metrics import peak_signal_noise_ratio

    readme = (ROOT / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    ns = {}
    exec(compile(block, "README.md", "exec"), ns)
    peak, final = map(float, capsys.readouterr().out.split())
    x, y, res = ns["x"], ns["y"], ns["res"]
    # what it prints is the run's peak and final PSNR
    assert peak == res.peak["psnr"] and final == res.final["psnr"]
    # scikit-image on the README's own arrays: the blurred, noisy input, clipped as shown,
    # and the restored image (float32, hence the tolerance)
    blurred = peak_signal_noise_ratio(x, np.clip(y, 0, 1), data_range=1.0)
    assert final == pytest.approx(peak_signal_noise_ratio(x, res.image.astype(np.float64), data_range=1.0), abs=1e-3)
    # stated margin: 100 BP-TV steps restore at least 1 dB over the blurred input, and the
    # best logged output (every 25 steps) already beats it
    assert final > blurred + 1.0 and peak > blurred
    # the logged curve climbs well above the untrained network's output
    assert res.curve[0]["iteration"] == 0 and peak > res.curve[0]["psnr"] + 5.0
