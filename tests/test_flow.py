"""Imports follow the flow (issue 28): config -> runner -> loop -> {physics, losses, models,
metrics, ...} -> records -> report. A module imports its own stage or later ones; the report
reads records and may name the parts (rule names, labels, metrics) but never imports the
config, the runner or the loop: a report needs only the records."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STAGES = {  # package prefix -> stage, in the order of the flow
    "bpdip.cli": 0,
    "bpdip.runner": 1, "bpdip.bench": 1, "bpdip.store": 1, "bpdip.loggers": 1,
    "bpdip.loop": 2,
    "bpdip.engine": 3,
    "bpdip.physics": 3, "bpdip.losses": 3, "bpdip.models": 3, "bpdip.metrics": 3, "bpdip.data": 3,
    "bpdip.baselines": 3, "bpdip.baselines_bm3d": 3, "bpdip.baselines_border": 3, "bpdip.registry": 3, "bpdip.streams": 3, "bpdip.stopping": 3,
    "bpdip.records": 4, "bpdip.curves": 4, "bpdip.paper": 4, "bpdip.provenance": 4,
    "bpdip.report": 5,
}
REPORT = 5


def stage(module: str) -> int | None:
    hits = [p for p in STAGES if module == p or module.startswith(p + ".")]
    return STAGES[max(hits, key=len)] if hits else None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(line, imported module) of every bpdip import, top-level or inside a function."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bpdip":
            names = [node.module] if node.module != "bpdip" else [f"bpdip.{a.name}" for a in node.names]
            yield from ((node.lineno, n) for n in names)
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "bpdip")


def backward(me: int, to: int) -> bool:
    """Whether stage ``me`` importing stage ``to`` goes against the flow: an earlier stage,
    the report from anything but itself, or the config, runner and loop from the report."""
    if to == REPORT:
        return me != REPORT
    return to < 3 if me == REPORT else to < me


def against_the_flow() -> list[str]:
    bad = []
    for path in sorted((ROOT / "bpdip").rglob("*.py")):
        me = stage(module_name(path))
        if me is None:
            continue
        for line, target in imports(path):
            to = stage(target)
            if to is None:
                continue
            if backward(me, to):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    return bad


def test_every_package_module_has_a_stage():
    unplaced = [module_name(p) for p in (ROOT / "bpdip").rglob("*.py")
                if stage(module_name(p)) is None and module_name(p) != "bpdip"]
    assert not unplaced, f"give these modules a stage in STAGES: {unplaced}"


def test_no_import_against_the_flow():
    assert not against_the_flow()


def test_the_check_sees_backward_imports():
    """The check is not blind: the imports issue 28 found are each caught."""
    cases = [("bpdip.report.visual", "bpdip.runner.plan"), ("bpdip.engine", "bpdip.loop"),
             ("bpdip.runner.sweep_report", "bpdip.report.cli"), ("bpdip.records", "bpdip.streams")]
    assert all(backward(stage(a), stage(b)) for a, b in cases)
    assert not backward(stage("bpdip.report.cells"), stage("bpdip.records"))
    assert not backward(stage("bpdip.runner.cell"), stage("bpdip.loop"))
