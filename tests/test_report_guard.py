"""Issue 28's guard: the report rebuilt from a small committed fixture of real records
(tests/fixtures/report/*/records: cpu_grid's uniform-0.3 jobs of two seeds and one
gaussian-2 job, sr_cpu's six jobs, demo's two) equals what the code wrote before the
refactor (``expected/``, written at b7be261 by ``python -m bpdip.report
tests/fixtures/report/NAME/records --out tests/fixtures/report/NAME/expected --no-figure
--visual none``): the same CSV numbers, the same Markdown and LaTeX lines. The expectations
were rewritten on purpose twice since (``git log -p tests/fixtures/report``): the unified
LaTeX captions and the final table's bold (40379c4), the seeds / stopping captions (3e6a958);
and at the merge of issues 29 and 30: the Baselines table's boundary-model column and caption
(baselines.csv gains ``boundary_model``) and the citations of docs/references.md; the column
winners, per-image and SR tables' LaTeX laid out with their Markdown's columns and caption (cf14fbd).
No number changed."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "report"


def _checker():
    spec = importlib.util.spec_from_file_location("check_reports", ROOT / "scripts" / "check_reports.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["grid", "sr", "demo"])
def test_fixture_report_unchanged(name, tmp_path, monkeypatch):
    check = _checker()
    monkeypatch.chdir(ROOT)  # the report names its inputs relative to the working directory
    check.rebuild(Path("tests/fixtures/report") / name / "records", tmp_path, extra=("--visual", "none"))
    diffs = check.compare_dirs(FIXTURES / name / "expected", tmp_path)
    assert not diffs, "\n".join(f"{n}: {d[:5]}" for n, d in diffs.items())


def test_guard_sees_a_changed_number(tmp_path):
    """The comparison is not blind: one changed digit in a CSV is a difference."""
    check = _checker()
    old = FIXTURES / "grid" / "expected" / "table1.csv"
    new = tmp_path / "table1.csv"
    text = old.read_text().splitlines()
    row = text[1].split(",")
    i = next(i for i, v in enumerate(row) if v.replace(".", "", 1).isdigit() and "." in v)
    row[i] = str(float(row[i]) + 1e-6)
    new.write_text("\n".join([text[0], ",".join(row), *text[2:]]) + "\n")
    assert check.compare_csv(old, new)
    assert not check.compare_csv(old, old)
