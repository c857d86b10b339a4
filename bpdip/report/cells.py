"""From jobs to Table I cells: merge sweeps, average curves, find the peak, flag gaps.

PROTOCOL "Optimisation and measurement": "average each setting's PSNR curve over the 14
images; a Table I cell is the PEAK of that average curve (the best common iteration,
chosen with ground truth), with the iteration where it peaks. Also report the
final-iteration values." The SSIM of a cell is the mean SSIM at that same iteration; the
paper's is the data_range = 2 variant (``ssim_dr2``), the data_range = 1 one is reported
beside it.

Rules that keep incomplete data visible:
- only images whose status is ``complete`` enter a mean; failed, running and corrupt
  images are left out and the cell is flagged;
- the mean curve uses only the iterations that every averaged image logged;
- a cell averaged over fewer images than expected is flagged with the missing names;
- records of the same cell with different config hashes are a conflict: not averaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bpdip.paper import KERNELS, LOSSES, NOISE_VARS, table1
from bpdip.report.protocol import deviations
from bpdip.report.sources import Cell, ImageRun, Job

# Flags in the order they are printed: key -> (marker, explanation). The markers are
# plain text here; the LaTeX writer maps them to math symbols.
FLAGS = {
    "missing": ("∅", "no record of this setting was found"),
    "conflict": ("‖", "records with different config hashes; not averaged (pick one sweep)"),
    "fewer_images": ("*", "averaged over fewer images than expected"),
    "failed": ("†", "an image failed; it is left out of the mean"),
    "running": ("‡", "an image is still running; it is left out of the mean"),
    "corrupt": ("§", "a record is corrupt; it is left out of the mean"),
    "truncated": ("¶", "the averaged curves end at different iterations; mean over the common ones"),
}


@dataclass
class Issue:
    """One line of the 'incomplete data' list."""

    kind: str  # a FLAGS key, or "unreadable" / "duplicate" for job-level notes
    detail: str
    cell: Cell | None = None
    image: str | None = None
    source: str | None = None


@dataclass
class CellResult:
    """Everything the tables and the figure need about one setting."""

    cell: Cell
    expected: list[str]
    images: dict[str, ImageRun] = field(default_factory=dict)  # the record kept per image
    config_hash: str | None = None
    run: dict = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    conflict: dict[str, list[str]] | None = None  # config_hash -> job sources
    flags: list[str] = field(default_factory=list)
    mean_curve: pd.DataFrame | None = None  # iteration, psnr, ssim, ssim_dr2 means
    peak: dict | None = None  # psnr, iteration, ssim_dr2, ssim
    final: dict | None = None  # psnr, ssim_dr2, ssim means of the final images
    used: list[str] = field(default_factory=list)  # images in the means
    config: dict | None = None  # resolved config of the records (informational)
    deviations: list[str] = field(default_factory=list)  # departures from the paper's protocol

    @property
    def status(self) -> str:
        if "missing" in self.flags or "conflict" in self.flags:
            return self.flags[0]
        return "incomplete" if self.flags else "complete"

    @property
    def markers(self) -> str:
        return "".join(FLAGS[f][0] for f in self.flags)

    @property
    def peak_at_end(self) -> bool:
        """The peak is the last common iteration: the curve may still be rising."""
        return bool(self.peak and len(self.mean_curve) > 1
                    and self.peak["iteration"] == int(self.mean_curve["iteration"].iloc[-1]))

    @property
    def paper(self) -> tuple[float, float] | None:
        return table1(self.cell.loss, self.cell.kernel, self.cell.noise_var)


def paper_grid() -> list[Cell]:
    """The 36 settings of Table I in its order (rows loss, then kernel, then noise)."""
    return [Cell(k, v, loss) for loss in LOSSES for k in KERNELS for v in NOISE_VARS]


def mean_curve(curves: list[pd.DataFrame]) -> tuple[pd.DataFrame, bool]:
    """Mean of per-image curves at the iterations every curve has (PROTOCOL: average
    the curves over the images at equal iterations). Returns (curve, truncated), where
    truncated says that some curve had iterations the others lack."""
    cols = ["psnr", "ssim", "ssim_dr2"]
    if not curves:
        return pd.DataFrame(columns=["iteration", *cols]), False
    common = set(curves[0]["iteration"])
    union = set(common)
    for c in curves[1:]:
        common &= set(c["iteration"])
        union |= set(c["iteration"])
    iterations = sorted(common)
    stack = np.stack([c.set_index("iteration").loc[iterations, cols].to_numpy(float) for c in curves])
    # no skipping of NaN: an iteration where one image has no value has no mean
    mean = pd.DataFrame(stack.mean(axis=0), columns=cols)
    mean.insert(0, "iteration", np.asarray(iterations, dtype="int64"))
    return mean, len(common) < len(union)


def peak_of(curve: pd.DataFrame) -> dict | None:
    """The best common iteration: highest finite mean PSNR (the earliest on a tie)."""
    finite = curve[np.isfinite(curve["psnr"].to_numpy(float))]
    if finite.empty:
        return None
    row = finite.loc[finite["psnr"].idxmax()]
    return {"psnr": float(row["psnr"]), "iteration": int(row["iteration"]),
            "ssim_dr2": float(row["ssim_dr2"]), "ssim": float(row["ssim"])}


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


def build_cell(cell: Cell, jobs: list[Job], expected: list[str], issues: list[Issue],
               explicit: bool = False) -> CellResult:
    """One setting from its jobs. ``expected``: the images it should have; with
    ``explicit`` (the user's list) other images are left out of the means and listed."""
    res = CellResult(cell, list(expected))
    if not jobs:
        res.flags = ["missing"]
        issues.append(Issue("missing", "no record found", cell))
        return res
    hashes: dict[str, list[str]] = {}
    for job in jobs:
        if job.config_hash is None and not any(i.status == "complete" for i in job.images.values()):
            continue  # no hash and no complete image (a W&B run cut short): cannot mix configs
        hashes.setdefault(str(job.config_hash), []).append(job.source)
    res.sources = [j.source for j in jobs]
    if len(hashes) > 1:
        res.conflict = hashes
        res.flags = ["conflict"]
        detail = "; ".join(f"config_hash {h}: {', '.join(s[:3])}" + (f" and {len(s) - 3} more" if len(s) > 3 else "")
                           for h, s in hashes.items())
        issues.append(Issue("conflict", detail, cell))
        return res
    res.config_hash = next(iter(hashes), None)
    # describe the cell by a job with a hash and a config (local records), the newest
    described = max(jobs, key=lambda j: (j.config_hash is not None, j.config is not None, j.mtime))
    res.run, res.config = described.run, described.config
    for job in sorted(jobs, key=lambda j: j.mtime):
        for name, img in job.images.items():
            kept = res.images.get(name)
            if kept is None or img.rank() >= kept.rank():
                if kept is not None and kept.status == img.status == "complete" \
                        and kept.summary.get("peak_psnr") != img.summary.get("peak_psnr"):
                    issues.append(Issue("duplicate", f"two complete records differ; kept {img.source}, "
                                        f"dropped {kept.source}", cell, name, img.source))
                res.images[name] = img
    for name in sorted(set(res.images) - set(res.expected)):
        if explicit:
            issues.append(Issue("ignored", "not in the --images list; left out of the means", cell, name))
            del res.images[name]
        else:
            res.expected.append(name)  # an image we have is always expected

    flags = set()
    for name in res.expected:
        img = res.images.get(name)
        if img is None:
            flags.add("fewer_images")
            issues.append(Issue("fewer_images", "no record of this image", cell, name))
        elif img.status != "complete":
            flags.update({"fewer_images", img.status})
            where = f" at iteration {img.last_iteration}" if img.last_iteration is not None else ""
            detail = {"running": f"still running{where}", "failed": f"failed{where}: {img.reason}",
                      "corrupt": f"corrupt: {img.reason}"}[img.status]
            issues.append(Issue(img.status, detail, cell, name, img.source))
    res.used = [n for n in res.expected if n in res.images and res.images[n].status == "complete"]
    used = [res.images[n] for n in res.used]
    res.mean_curve, truncated = mean_curve([i.curve for i in used])
    if truncated:
        flags.add("truncated")
        ends = ", ".join(f"{i.name} {i.last_iteration}" for i in used)
        issues.append(Issue("truncated", f"last logged iterations differ ({ends})", cell))
    res.peak = peak_of(res.mean_curve) if used else None
    if used:
        res.final = {k: float(np.mean([i.summary[f"final_{k}"] for i in used])) for k in ("psnr", "ssim_dr2", "ssim")}
    res.flags = [f for f in FLAGS if f in flags]
    res.deviations = deviations(res.config, cell, len(res.expected))
    return res


def expected_images(jobs: list[Job], images: list[str] | None) -> list[str]:
    """The images every cell should have: the given list, or all images seen anywhere."""
    if images:
        return list(dict.fromkeys(images))
    seen = []
    for job in jobs:
        seen.extend(job.images)
    return sorted(set(seen))


def build_cells(jobs: list[Job], images: list[str] | None = None) -> tuple[list[CellResult], list[Issue]]:
    """All cells of the report: the 36 settings of Table I (those without records flagged
    missing), then any other setting found in the records."""
    by_cell, issues = merge_jobs(jobs)
    expected = expected_images(jobs, images)
    cells = paper_grid()
    cells += sorted(c for c in by_cell if c not in cells)
    return [build_cell(c, by_cell.get(c, []), expected, issues, explicit=bool(images)) for c in cells], issues
