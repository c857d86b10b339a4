"""The documentation never lies: the site builds in strict mode, its links and pages are
whole, the paths it names exist, its API example runs, and every `python run.py ...`
command quoted in the README or on a page composes with Hydra (compose only, no training)."""

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
# the same prefixes of the source tree as tests/test_readme.py
SOURCE_TREE = r"(?<![\w/.-])((?:bpdip|scripts|conf|tests|data|\.ci)/[\w./-]*[\w/])"


def mkdocs_build(config_dir: Path, site: Path) -> subprocess.CompletedProcess:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="the docs extra is not installed: pip install -e '.[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    return subprocess.run(cmd, cwd=config_dir, env=env, capture_output=True, text=True, timeout=300)


def test_the_site_builds_in_strict_mode(tmp_path):
    out = mkdocs_build(ROOT, tmp_path / "site")
    assert out.returncode == 0, out.stderr[-4000:]
    for page in PAGES:
        rel = page.relative_to(DOCS).with_suffix("")
        html = tmp_path / "site" / (rel.parent if rel.name == "index" else rel) / "index.html"
        assert html.is_file(), f"{page.relative_to(ROOT)} was not built"
    # mkdocstrings resolved the modules: the API pages hold the classes, not an empty page
    api = (tmp_path / "site" / "api" / "losses" / "index.html").read_text()
    assert 'id="bpdip.losses.BP"' in api and 'id="bpdip.losses.make_loss"' in api


def test_the_strict_build_fails_on_a_broken_link_and_a_page_outside_the_nav(tmp_path):
    """What the strict build above guards against really fails it (mkdocs.yml's validation)."""
    copy = tmp_path / "copy"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "bpdip").symlink_to(ROOT / "bpdip", target_is_directory=True)
    with (copy / "docs" / "index.md").open("a") as f:
        f.write("\n[gone](no-such-page.md) and [no anchor](protocol.md#no-such-section)\n")
    (copy / "docs" / "orphan.md").write_text("# Not in the nav\n")
    out = mkdocs_build(copy, tmp_path / "site")
    assert out.returncode != 0
    for what in ("no-such-page.md", "#no-such-section", "orphan.md"):
        assert what in out.stderr, out.stderr[-3000:]


def test_the_readme_links_every_page_and_only_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    links = set(re.findall(r"\]\((docs/[^)#\s]+)", readme))
    missing = sorted(p for p in links if not (ROOT / p).is_file())
    assert not missing, f"README links pages that do not exist: {missing}"
    topics = {f"docs/{p.name}" for p in DOCS.glob("*.md") if p.name != "index.md"} | {"docs/api/index.md"}
    assert topics <= links, f"README does not link: {sorted(topics - links)}"


def test_paths_named_on_the_pages_exist():
    named = {p for page in PAGES for p in re.findall(SOURCE_TREE, page.read_text())}
    assert len(named) >= 30, named
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"docs name paths that do not exist: {missing}"


def test_the_api_example_runs(capsys):
    from skimage.metrics import peak_signal_noise_ratio

    page = (DOCS / "api" / "index.md").read_text()
    block = page.split("```python\n", 1)[1].split("```", 1)[0]
    ns = {}
    exec(compile(block, "docs/api/index.md", "exec"), ns)
    peak, final = map(float, capsys.readouterr().out.split())
    x, y, res = ns["x"], ns["y"], ns["res"]
    # what it prints is the run's peak and final PSNR
    assert peak == res.peak["psnr"] and final == res.final["psnr"]
    # scikit-image on the example's own arrays: the blurred, noisy input, clipped as shown,
    # and the restored image (float32, hence the tolerance)
    blurred = peak_signal_noise_ratio(x, np.clip(y, 0, 1), data_range=1.0)
    assert final == pytest.approx(peak_signal_noise_ratio(x, res.image.astype(np.float64), data_range=1.0), abs=1e-3)
    # stated margin: 100 BP-TV steps restore at least 1 dB over the blurred input, and the
    # best logged output (every 25 steps) already beats it
    assert final > blurred + 1.0 and peak > blurred
    # the logged curve climbs well above the untrained network's output
    assert res.curve[0]["iteration"] == 0 and peak > res.curve[0]["psnr"] + 5.0


# --- the quoted commands ---------------------------------------------------------------

FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
SHELL = ("bash", "sh", "shell", "console", "")


def run_commands(text: str) -> list[tuple[int, list[str]]]:
    """(line, arguments after run.py) of every `python ... run.py ...` in the text's code
    blocks (backslash continuations joined, comments dropped) and inline code spans."""
    found = []
    for block in FENCE.finditer(text):
        if block.group(1).strip() not in SHELL:
            continue
        first = text.count("\n", 0, block.start(2)) + 1
        lines = block.group(2).split("\n")
        joined, start = "", None
        for i, line in enumerate(lines):
            start = first + i if start is None else start
            if line.rstrip().endswith("\\"):
                joined += line.rstrip()[:-1] + " "
                continue
            if "run.py" in joined + line:
                found += [(start, args) for args in split_run_py(joined + line)]
            joined, start = "", None
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for span in re.finditer(r"`(python [^`]*run\.py[^`]*)`", prose):
        found += [(prose.count("\n", 0, span.start()) + 1, a) for a in split_run_py(" ".join(span.group(1).split()))]
    return found


def split_run_py(line: str) -> list[list[str]]:
    tokens = shlex.split(line, comments=True)
    commands, current = [], None
    for i, tok in enumerate(tokens):
        if tok in ("&&", "||", ";", "|"):
            current = None
        elif current is not None:
            current.append(tok)
        elif tok.endswith("run.py") and i > 0 and tokens[i - 1] in ("python", "python3"):
            current = []
            commands.append(current)
    return commands


def quoted_commands():
    params = []
    for path in [ROOT / "README.md", *PAGES]:
        for line, args in run_commands(path.read_text()):
            name = f"{path.relative_to(ROOT)}:{line}"
            params.append(pytest.param(args, id=f"{name}: {' '.join(args)}"[:150]))
    return params


COMMANDS = quoted_commands()


def test_the_pages_quote_commands():
    """The extraction finds them: the README's and the pages' examples, sweeps included."""
    assert len(COMMANDS) >= 40, len(COMMANDS)
    flat = [" ".join(p.values[0]) for p in COMMANDS]
    assert "-m experiment=table1" in flat and "experiment=demo" in flat
    assert any(c.startswith("-m --config-dir myconf") for c in flat)


def test_the_extraction_reads_shell_as_written():
    text = ("```bash\nexport A=1\nPYTHONPATH=. python path/to/run.py -m a=1,2 \\\n    b='[x, y]'   # note\n"
            "pip install x && python run.py c=3\n```\nsee `python run.py\nd=4` and `python scripts/bench.py`\n")
    assert run_commands(text) == [(3, ["-m", "a=1,2", "b=[x, y]"]), (5, ["c=3"]), (7, ["d=4"])]


@pytest.fixture(scope="module")
def extension_conf(tmp_path_factory):
    """docs/extending.md's config folder, for the commands that pass `--config-dir myconf`
    (as tests/test_extend.py builds it; composing needs only the YAML files)."""
    page = (DOCS / "extending.md").read_text()
    root = tmp_path_factory.mktemp("docs_ext") / "myconf"
    for block in re.findall(r"```yaml\n(# myconf/(\S+)\n.*?)```", page, re.S):
        (root / block[1]).parent.mkdir(parents=True, exist_ok=True)
        (root / block[1]).write_text(block[0])
    assert (root / "loss" / "power_bp.yaml").is_file() and (root / "kernel" / "motion.yaml").is_file()
    return root


@pytest.fixture(scope="module")
def gpu_resolver():
    """run.py's resolver (conf/hydra/launcher/joblib_gpus.yaml uses it), registered as run.py does."""
    spec = importlib.util.spec_from_file_location("bpdip_run_py", ROOT / "run.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def first_values(overrides: list[str], multirun: bool) -> list[str]:
    """Each override as Hydra parses it; a sweep (`a=1,2`) becomes its first value, which is
    the first job Hydra's basic sweeper launches."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for text, override in zip(overrides, parsed):
        if override.is_sweep_override():
            assert multirun, f"{text!r} is a sweep: it needs -m"
            first = next(iter(override.sweep_string_iterator()))
            text = f"{text.split('=', 1)[0]}={first}"
        out.append(text)
    return out


@pytest.mark.parametrize("args", COMMANDS)
def test_a_quoted_command_composes(args, extension_conf, gpu_resolver):
    multirun, overrides, rest = False, [], list(args)
    while rest:
        tok = rest.pop(0)
        if tok in ("-m", "--multirun"):
            multirun = True
        elif tok == "--config-dir":
            assert rest.pop(0) == "myconf", "only docs/extending.md's config folder is known here"
            overrides.append(f"hydra.searchpath=[file://{extension_conf}]")
        elif tok in ("--help", "--hydra-help", "--info"):
            return  # nothing to compose
        else:
            assert not tok.startswith("-"), f"unknown run.py flag {tok}"
            overrides.append(tok)
    overrides = first_values(overrides, multirun)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        sweep = cfg.hydra.sweeper.get("params") or {}
        if multirun and sweep:  # a preset's sweep (experiment=table1): its first job
            given = {o.split("=", 1)[0] for o in overrides}
            extra = [f"{k}={v}" for k, v in sweep.items() if k not in given]
            cfg = compose("config", overrides=overrides + first_values(extra, True), return_hydra_config=True)
    assert "kernel" in cfg and "loss" in cfg and cfg.loss.iterations > 0
    # every interpolation of the job's config resolves (a missing value, ???, may stay)
    job = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(job):
        launcher = job.hydra.get("launcher")
        del job["hydra"]
    OmegaConf.to_container(job, resolve=True)
    if launcher is not None and "n_jobs" in launcher:
        assert int(OmegaConf.to_container(launcher, resolve=True)["n_jobs"]) >= 1
