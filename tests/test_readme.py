"""The README never lies: CI runs exactly the commands it shows."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def ci_commands() -> list[str]:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    return [ln.strip() for ln in lines
            if ln.strip() and not ln.lstrip().startswith(("#", "set ", "cd ", "export "))]


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    commands = ci_commands()
    assert len(commands) == 2, commands  # install + main job, then the tests
    for cmd in commands:
        assert f"\n{cmd}\n" in readme, f"README lacks the CI command: {cmd}"


def test_readme_commands_use_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    for path in ("run.py", "scripts/make_report.py", "scripts/bench.py", "data/Set14/SHA256SUMS"):
        if path in readme:
            assert (ROOT / path).exists(), path


def test_readme_python_example_runs(capsys):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "README.md", "exec"), {})
    peak, final = map(float, capsys.readouterr().out.split())
    assert 0 < peak < 60 and 0 < final < 60
