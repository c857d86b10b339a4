"""The README never lies: CI runs exactly the commands it shows, and the files it names exist.
(tests/test_docs.py checks the documentation pages, the API example and every `python run.py`
command quoted in the README and the pages.)"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ci_lines() -> list[str]:
    return [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln.strip()]


def ci_commands() -> list[str]:
    """The README's commands in .ci/run: not its shell settings, nor the system packages
    it installs first (apt-get lines)."""
    return [ln for ln in ci_lines() if not ln.startswith(("#", "set ", "cd ", "export ", "apt-get "))]


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    commands = ci_commands()
    assert len(commands) == 2, commands  # install + main job, then the tests
    for cmd in commands:
        assert f"\n{cmd}\n" in readme, f"README lacks the CI command: {cmd}"


def test_ci_installs_the_slurm_packages_the_readme_names():
    [line] = [ln for ln in ci_lines() if ln.startswith("apt-get ") and "slurm" in ln]
    install = line[line.index("apt-get install"):]
    assert install == "apt-get install -y slurm-wlm slurmdbd mariadb-server"
    assert f"`{install}`" in (ROOT / "README.md").read_text()


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
