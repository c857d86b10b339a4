"""From jobs to Table I cells: merge sweeps and seeds, average curves, find the peak, flag gaps.

The numbers are bpdip.curves' (PROTOCOL "Optimisation and measurement": each seed's value is
the peak of its image-averaged curve; the setting's the mean ± s.d. over seeds). Only
``complete`` images enter a mean; every gap is a flag (:data:`FLAGS`) and an :class:`Issue`.
Records of one setting merge as seeds unless their ``protocol_hash`` differs, or two records
of one seed differ in ``config_hash`` (a conflict: not averaged). docs/reports.md "Seeds".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bpdip.curves import at_end, mean_curve, over_seeds, peak_of, std
from bpdip.paper import KERNELS, LOSSES, NOISE_VARS, table1
from bpdip.report.protocol import deviations
from bpdip.report.sources import Cell, ImageRun, Job, seed_key, seed_label

# Flags in the order they are printed: key -> (marker, explanation). The markers are
# plain text here; the LaTeX writer maps them to math symbols.
FLAGS = {
    "missing": ("∅", "no record of this setting was found"),
    "conflict": ("‖", "records with different configurations; not averaged (pick one sweep)"),
    "fewer_images": ("*", "averaged over fewer images than expected"),
    "fewer_seeds": ("°", "fewer seeds than the other settings of this report"),
    "failed": ("†", "an image failed; it is left out of the mean"),
    "running": ("‡", "an image is still running; it is left out of the mean"),
    "corrupt": ("§", "a record is corrupt; it is left out of the mean"),
    "truncated": ("¶", "the averaged curves end at different iterations; mean over the common ones"),
}


@dataclass
class Issue:
    """One line of the 'incomplete data' list."""

    kind: str  # a FLAGS key, or "unreadable" / "duplicate" / "unchecked" for notes
    detail: str
    cell: Cell | None = None
    image: str | None = None
    source: str | None = None
    seed: object = None  # the seed concerned, where the cell has several


@dataclass
class SeedResult:
    """One seed of one setting: its images, mean curve and peak (that seed's Table I value)."""

    seed: object  # int, text, or None when the records do not say
    images: dict[str, ImageRun] = field(default_factory=dict)  # the record kept per image
    sources: list[str] = field(default_factory=list)
    config_hash: str | None = None
    used: list[str] = field(default_factory=list)  # images in the means
    mean_curve: pd.DataFrame | None = None  # iteration, psnr, ssim, ssim_dr2 means
    peak: dict | None = None  # psnr, iteration, ssim_dr2, ssim
    final: dict | None = None  # psnr, ssim_dr2, ssim means of the final images
    flags: set = field(default_factory=set)

    @property
    def peak_at_end(self) -> bool:
        """The peak is the last common iteration: the curve may still be rising."""
        return at_end(self.peak, self.mean_curve)


@dataclass
class CellResult:
    """One setting: its ``seeds`` and its values, ``peak`` and ``final`` (one seed: that
    seed's; several: the means over the seeds with a value, ``iteration`` None, ± ``psnr_std``)."""

    cell: Cell
    expected: list[str]
    seeds: dict = field(default_factory=dict)  # seed -> SeedResult, in seed order
    expected_seeds: list = field(default_factory=list)  # the seeds of the whole report
    config_hash: str | None = None  # the one config hash, or None (several seeds, conflict)
    protocol_hash: str | None = None
    run: dict = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    conflict: dict[str, list[str]] | None = None  # hash -> job sources
    flags: list[str] = field(default_factory=list)
    mean_curve: pd.DataFrame | None = None  # one seed: its mean curve; several: their mean
    peak: dict | None = None  # psnr, iteration, ssim_dr2, ssim
    final: dict | None = None  # psnr, ssim_dr2, ssim
    psnr_std: float | None = None  # over the seeds' peak PSNRs (ddof 1); None with < 2
    final_psnr_std: float | None = None
    used: list[str] = field(default_factory=list)  # images in the mean of every seed
    no_truth: bool = False  # data=observed: complete images without ground truth (no PSNR)
    config: dict | None = None  # resolved config of the records (informational)
    deviations: list[str] = field(default_factory=list)  # departures from the paper's protocol
    # stream -> its value (bpdip.report.streams.stream_value), computed once: many sections read it
    stream_values: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def status(self) -> str:
        if "missing" in self.flags or "conflict" in self.flags:
            return self.flags[0]
        return "incomplete" if self.flags else "complete"

    @property
    def markers(self) -> str:
        return "".join(FLAGS[f][0] for f in self.flags)

    @property
    def valued_seeds(self) -> list[SeedResult]:
        """The seeds with a Table I value (at least one complete image)."""
        return [s for s in self.seeds.values() if s.peak is not None]

    @property
    def n_seeds(self) -> int:
        return len(self.valued_seeds)

    @property
    def peak_at_end(self) -> bool:
        """Some seed peaks at its last common iteration: the curve may still be rising."""
        return any(s.peak_at_end for s in self.seeds.values())

    @property
    def paper(self) -> tuple[float, float] | None:
        return table1(self.cell.loss, self.cell.kernel, self.cell.noise_var)


def has_value(c: CellResult | None, which: str = "peak") -> bool:
    """A setting with a value (``peak`` or ``final``): not missing, no conflict, a complete image."""
    return c is not None and c.status not in ("missing", "conflict") and getattr(c, which) is not None


def merge_jobs(jobs: list[Job]) -> tuple[dict[Cell, list[Job]], list[Issue]]:
    """Group readable jobs by cell; unreadable jobs become issues."""
    by_cell: dict[Cell, list[Job]] = {}
    issues = []
    for job in jobs:
        if job.error is not None or job.cell is None:
            issues.append(Issue("corrupt", f"record unreadable: {job.error}", None, None, job.source))
            continue
        by_cell.setdefault(job.cell, []).append(job)
    return by_cell, issues


def _sources_text(sources: list[str]) -> str:
    return ", ".join(sources[:3]) + (f" and {len(sources) - 3} more" if len(sources) > 3 else "")


def find_conflict(jobs: list[Job]) -> tuple[str, dict[str, list[str]]] | None:
    """(what, {hash: sources}) when the jobs of one setting may not be merged, else None.

    Jobs without a hash and without a complete image (a W&B run cut short) are skipped:
    they cannot mix configurations in a mean."""
    counted = [j for j in jobs if j.config_hash is not None or any(i.status == "complete" for i in j.images.values())]
    protocols: dict[str, list[str]] = {}
    for job in counted:
        if job.protocol_hash is not None:
            protocols.setdefault(job.protocol_hash, []).append(job.source)
    if len(protocols) > 1:
        return "protocol_hash", protocols
    by_seed: dict = {}
    for job in counted:
        by_seed.setdefault(job.seed, {}).setdefault(str(job.config_hash), []).append(job.source)
    for seed in sorted(by_seed, key=seed_key):
        if len(by_seed[seed]) > 1:
            return ("config_hash" if seed is None else f"seed {seed_label(seed)}: config_hash"), by_seed[seed]
    return None


def build_seed(seed, jobs: list[Job], cell: Cell, issues: list[Issue], note_seed: bool) -> SeedResult:
    """Merge one seed's jobs image by image (a complete record wins over a running one)."""
    res = SeedResult(seed, sources=[j.source for j in jobs])
    hashes = {j.config_hash for j in jobs if j.config_hash is not None}
    res.config_hash = next(iter(hashes)) if len(hashes) == 1 else None
    for job in sorted(jobs, key=lambda j: j.mtime):
        for name, img in job.images.items():
            kept = res.images.get(name)
            if kept is None or img.rank() >= kept.rank():
                if kept is not None and kept.status == img.status == "complete" \
                        and kept.summary.get("peak_psnr") != img.summary.get("peak_psnr"):
                    issues.append(Issue("duplicate", f"two complete records differ; kept {img.source}, "
                                        f"dropped {kept.source}", cell, name, img.source,
                                        seed if note_seed else None))
                res.images[name] = img
    return res


def finish_seed(res: SeedResult, cell: Cell, expected: list[str], issues: list[Issue], note_seed: bool) -> None:
    """Flags, mean curve, peak and final values of one seed over the expected images."""
    seed = res.seed if note_seed else None
    for name in expected:
        img = res.images.get(name)
        if img is None:
            res.flags.add("fewer_images")
            issues.append(Issue("fewer_images", "no record of this image", cell, name, seed=seed))
        elif img.status != "complete":
            res.flags.update({"fewer_images", img.status})
            where = f" at iteration {img.last_iteration}" if img.last_iteration is not None else ""
            detail = {"running": f"still running{where}", "failed": f"failed{where}: {img.reason}",
                      "corrupt": f"corrupt: {img.reason}"}[img.status]
            issues.append(Issue(img.status, detail, cell, name, img.source, seed))
    res.used = [n for n in expected if n in res.images and res.images[n].status == "complete"]
    used = [res.images[n] for n in res.used]
    res.mean_curve, truncated = mean_curve([i.curve for i in used])
    if truncated:
        res.flags.add("truncated")
        ends = ", ".join(f"{i.name} {i.last_iteration}" for i in used)
        issues.append(Issue("truncated", f"last logged iterations differ ({ends})", cell, seed=seed))
    res.peak = peak_of(res.mean_curve) if used else None
    if used and all(i.summary.get("final_psnr") is not None for i in used):  # None: no ground truth
        res.final = {k: float(np.mean([i.summary[f"final_{k}"] for i in used])) for k in ("psnr", "ssim_dr2", "ssim")}


def build_cell(cell: Cell, jobs: list[Job], expected: list[str], issues: list[Issue],
               explicit: bool = False, expected_seeds: list | None = None, describe=deviations) -> CellResult:
    """One setting from its jobs. ``expected``: the images it should have; with
    ``explicit`` (the user's list) other images are left out of the means and listed.
    ``expected_seeds``: the seeds it should have (default: its own). ``describe(config,
    cell, n_images)``: its departures from the protocol (default Table I's)."""
    res = CellResult(cell, list(expected))
    if not jobs:
        res.flags = ["missing"]
        res.expected_seeds = list(expected_seeds or [])
        issues.append(Issue("missing", "no record found", cell))
        return res
    res.sources = [j.source for j in jobs]
    conflict = find_conflict(jobs)
    if conflict is not None:
        what, res.conflict = conflict
        res.flags = ["conflict"]
        issues.append(Issue("conflict", "; ".join(f"{what} {h}: {_sources_text(s)}" for h, s in res.conflict.items()),
                            cell))
        return res
    res.protocol_hash = next((j.protocol_hash for j in jobs if j.protocol_hash is not None), None)
    # describe the cell by a job with a hash and a config (local records), the newest
    described = max(jobs, key=lambda j: (j.config_hash is not None, j.config is not None, j.mtime))
    res.run, res.config = described.run, described.config

    by_seed: dict = {}
    for job in jobs:
        by_seed.setdefault(job.seed, []).append(job)
    order = sorted(by_seed, key=seed_key)
    res.expected_seeds = sorted(set(expected_seeds or []) | set(order), key=seed_key)
    note_seed = len(res.expected_seeds) > 1
    unchecked = sorted({j.seed for j in jobs if j.protocol_hash is None}, key=seed_key)
    if len(order) > 1 and unchecked:
        issues.append(Issue("unchecked", f"records of seed(s) {', '.join(map(seed_label, unchecked))} have no "
                            "protocol_hash (older runner): taken as seeds of one setting, assuming their configs "
                            "differ only by the seed", cell))
    res.seeds = {seed: build_seed(seed, by_seed[seed], cell, issues, note_seed) for seed in order}
    for name in sorted({n for r in res.seeds.values() for n in r.images} - set(res.expected)):
        if explicit:
            issues.append(Issue("ignored", "not in the --images list; left out of the means", cell, name))
            for r in res.seeds.values():
                r.images.pop(name, None)
        else:
            res.expected.append(name)  # an image we have is always expected
    for r in res.seeds.values():
        finish_seed(r, cell, res.expected, issues, note_seed)
    hashes = {r.config_hash for r in res.seeds.values()}
    res.config_hash = next(iter(hashes)) if len(hashes) == 1 else None

    flags = set().union(*(r.flags for r in res.seeds.values()))
    valued = res.valued_seeds
    res.no_truth = bool(res.seeds) and all(r.used and r.final is None for r in res.seeds.values())
    if len(valued) < len(res.expected_seeds) and not res.no_truth:
        flags.add("fewer_seeds")
        have = {r.seed for r in valued}
        lacking = [seed_label(s) for s in res.expected_seeds if s not in have]
        issues.append(Issue("fewer_seeds", f"no value for seed(s) {', '.join(lacking)} (the report has seeds "
                            f"{', '.join(map(seed_label, res.expected_seeds))})", cell))
    counted = list(res.seeds.values()) if res.no_truth else valued  # no truth: no seed has a value
    res.used = [n for n in res.expected if counted and all(n in r.used for r in counted)]
    seeds = over_seeds([r.peak for r in valued], [r.mean_curve for r in valued])
    res.psnr_std = seeds.std
    res.mean_curve = seeds.curve if valued else mean_curve([])[0]
    if len(valued) == 1:  # one seed: exactly its values, the peak's iteration included
        res.peak, res.final = valued[0].peak, valued[0].final
    elif valued:  # the seeds' mean ± s.d. (the curve: for Fig. 1 only); each seed has its own iteration
        res.peak = dict(valued[0].peak, **seeds.peak, iteration=None)
        res.final = {k: float(np.mean([r.final[k] for r in valued])) for k in ("psnr", "ssim_dr2", "ssim")}
        res.final_psnr_std = std(r.final["psnr"] for r in valued)
    res.flags = [f for f in FLAGS if f in flags]
    res.deviations = describe(res.config, cell, len(res.expected))
    return res


def expected_images(jobs: list[Job], images: list[str] | None) -> list[str]:
    """The images every cell should have: the given list, or all images seen anywhere."""
    if images:
        return list(dict.fromkeys(images))
    return sorted({name for job in jobs for name in job.images})


def expected_seeds(jobs: list[Job]) -> list:
    """The seeds every cell should have: all seeds of the readable records."""
    return sorted({j.seed for j in jobs if j.error is None and j.cell is not None}, key=seed_key)


def build_cells(jobs: list[Job], images: list[str] | None = None, grid: bool = True, key=None,
                describe=deviations) -> tuple[list[CellResult], list[Issue]]:
    """All cells of the report: with ``grid`` the 36 settings of Table I in its order (those without
    records flagged missing), then any other setting found in the records, sorted by ``key``.
    ``describe``: as for :func:`build_cell`."""
    by_cell, issues = merge_jobs(jobs)
    expected = expected_images(jobs, images)
    seeds = expected_seeds(jobs)
    cells = [Cell(k, v, loss) for loss in LOSSES for k in KERNELS for v in NOISE_VARS] if grid else []
    cells += sorted((c for c in by_cell if c not in cells), key=key)
    return [build_cell(c, by_cell.get(c, []), expected, issues, explicit=bool(images), expected_seeds=seeds,
                       describe=describe) for c in cells], issues
