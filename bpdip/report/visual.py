"""The paper's Figs. 2-5: truth | blurred input | LS | LS-TV | BP | BP-TV, each over a
close-up of one window (:func:`detail_region`), from the records only: the truth and y the
runner kept (``images/IMAGE/truth.png``, ``y.npy``), the methods' saved PNGs and the
records' own numbers (never recomputed from 8-bit PNGs). Rows: :data:`ROWS`.
docs/reports.md "Restored images".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bpdip.data import center_crop, load_image
from bpdip.paper import KERNEL_LABELS, LOSS_LABELS, LOSSES, canonical_noise
from bpdip.records import input_paths
from bpdip.report.render import fmt, tex_escape
from bpdip.report.sources import seed_key

# the paper's visual figures: (kernel, noise variance) -> figure number
PAPER_FIGURES = {("uniform", 0.3): 2, ("radial", 2.0): 3, ("gaussian", 2.0): 4, ("gaussian", 4.0): 5}
# rows "<stream>.<rule>" (SPEC "output streams"), in order: their words in the caption and over
# the row; "restored" names the record's restored stream, {stream} in the words
ROW_WORDS = {
    "perturbed.oracle": (("the perturbed output (Table I's stream) at each image's own best logged iteration "
                          "(oracle, chosen with ground truth; Table I itself takes the best common iteration of the "
                          "image-averaged curve)"),
                         "perturbed output at each image's own best iteration (oracle)"),
    "average.oracle": ("the average output at its own best logged iteration (oracle, chosen with ground truth)",
                       "average output at each image's own best iteration (oracle)"),
    "restored.wmv": ("the restored stream ({stream}) at WMV's choice (online, no ground truth)",
                     "{stream} output at WMV's choice"),
}
ROWS = tuple(ROW_WORDS)
WINDOW_FRACTION, MIN_WINDOW = 0.25, 8  # close-up side: a quarter of the shorter side, >= 8 px
REGION_COLOR = "yellow"


@dataclass(frozen=True)
class VisualSettings:
    """What the restored-image figures show. ``settings``: (kernel, variance) pairs and the
    words ``paper`` (the four of Figs. 2-5) and ``all`` (every deblurring setting with
    records); ``images``: ``first``, ``all`` or names; ``region``: the close-up window
    (top, left, size) in pixels of y's frame, None: chosen automatically."""

    settings: tuple = ("paper",)
    images: tuple = ("first",)
    region: tuple[int, int, int] | None = None
    rows: tuple[str, ...] = ROWS

    @classmethod
    def parse(cls, settings: str | None = None, images: str | None = None, region: str | None = None):
        """From the CLI's ``--visual``, ``--visual-images``, ``--visual-region`` (ValueError: one line)."""
        given = {}
        if settings is not None:
            tokens = split_names(settings, "--visual is empty; give 'paper', 'all', 'none' or KERNEL-VAR,... "
                                           "(e.g. uniform-0.3,gaussian-4)")
            given["settings"] = tuple(_setting(t) for t in tokens if t != "none")
        if images is not None:
            given["images"] = split_names(images, "--visual-images is empty; give 'first', 'all' or image names "
                                                  "such as face,zebra")
        if region is not None:
            try:
                top, left, size = (int(v) for v in region.split(","))
            except ValueError:
                top = left = size = -1
            if min(top, left) < 0 or size < 2:
                raise ValueError(f"--visual-region {region!r}: give TOP,LEFT,SIZE in pixels (top, left >= 0, "
                                 f"size >= 2), e.g. 10,20,24")
            given["region"] = (top, left, size)
        return cls(**given)

    def wanted(self, cells) -> list[tuple[str, float]]:
        """The (kernel, variance) pairs to draw, in order, over the report's deblurring cells."""
        found = list(dict.fromkeys((c.cell.kernel, c.cell.noise_var) for c in cells if c.sources))
        out = []
        for item in self.settings:
            out += list(PAPER_FIGURES) if item == "paper" else found if item == "all" else [item]
        return list(dict.fromkeys(out))


def split_names(text: str, empty: str) -> tuple[str, ...]:
    """The comma-separated words of an option (ValueError ``empty`` when there is none)."""
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    if not names:
        raise ValueError(empty)
    return names


def _setting(token: str):
    """A ``--visual`` word: ``paper`` or ``all`` as is, KERNEL-VAR as (kernel, variance)."""
    if token in ("paper", "all"):
        return token
    kernel, _, var = token.rpartition("-")
    try:
        value = canonical_noise(var)
    except ValueError:
        value = math.nan
    if not kernel or not math.isfinite(value):
        raise ValueError(f"--visual {token!r} is not a setting; give KERNEL-VAR such as uniform-0.3 or "
                         f"gaussian-4 (noise variance on the 0..255 scale), 'paper', 'all' or 'none'")
    return kernel, value


@dataclass
class Panel:
    """One image of a figure with the numbers under it (None: not known)."""

    title: str
    image: np.ndarray | None
    psnr: float | None = None
    ssim: float | None = None  # data_range 2, Table I's
    note: str = ""  # the iteration, or why there is no image

    def text(self) -> str:
        """What is written under the panel: ``PSNR dB / SSIM`` and the note (the iteration)."""
        if self.image is None or self.psnr is None:
            return self.note or "no ground truth"
        return f"{fmt(self.psnr, 2)} dB / {fmt(self.ssim, 3)}" + (f"\n{self.note}" if self.note else "")


@dataclass
class Row:
    key: str  # "<stream>.<rule>" of VisualSettings.rows
    label: str  # what the row shows, for the caption
    short: str  # the same in a few words, over the row
    panels: list[Panel]  # one per loss, in LOSSES order


@dataclass
class Visual:
    kernel: str
    noise_var: float
    image: str
    seed: object
    truth: Panel | None
    blurred: Panel | None
    rows: list[Row]
    region: tuple[int, int, int]  # the close-up window (top, left, size) and how it was chosen
    region_note: str
    notes: list[str]  # for the caption: what is not shown and why

    def file_stem(self, prefix: str = "visual") -> str:
        """``visual-uniform-0p3-face``: letters, digits and '-' only (safe in LaTeX and URLs)."""
        raw = f"{prefix}-{self.kernel}-{self.noise_var:g}-{self.image}".replace(".", "p")
        return re.sub(r"[^A-Za-z0-9-]", "-", raw)

    @property
    def title(self) -> str:
        number = PAPER_FIGURES.get((self.kernel, self.noise_var))
        fig = f"Fig. {number} (cf. the paper): " if number else ""
        return (f"{fig}{KERNEL_LABELS.get(self.kernel, self.kernel)} kernel, σ = √{self.noise_var:g}; "
                f"image {self.image}, seed {self.seed}")


# ----------------------------------------------------------------------------- the region

def detail_region(images: list[np.ndarray], truth: np.ndarray | None, size: int) -> tuple[int, int, int]:
    """(top, left, size) of the size x size window where the methods differ most: the
    largest variance over the methods of their local MSE against the truth (the mean of
    the squared error over the window and the channels). Without the truth, the window
    with the largest mean pixel variance over the methods; with one method, its largest
    local MSE (without the truth: the most textured window). Windows lie inside the image;
    the first of equal windows wins."""
    from scipy.ndimage import uniform_filter

    stack = np.stack([np.asarray(i, dtype=np.float64) for i in images])  # (M, H, W, C)
    h, w = stack.shape[1:3]
    size = min(size, h, w)
    if truth is not None:
        err = ((stack - truth) ** 2).mean(axis=-1)
        local = np.stack([uniform_filter(e, size, mode="constant") for e in err])
        score = local.var(axis=0) if len(images) > 1 else local[0]
    elif len(images) > 1:  # how much the methods' pixels differ
        score = uniform_filter(stack.var(axis=0).mean(axis=-1), size, mode="constant")
    else:  # one method, no truth: its most textured window
        detail = stack[0] - uniform_filter(stack[0], (size, size, 1))
        score = uniform_filter((detail**2).mean(axis=-1), size, mode="constant")
    # uniform_filter's window at index i covers [i - size // 2, i - size // 2 + size)
    start = size // 2
    valid = score[start:h - size + start + 1, start:w - size + start + 1]
    top, left = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(top), int(left), size


# ----------------------------------------------------------------------------- from records

def choice_values(entry: dict, stream: str, rule: str) -> dict:
    """PSNR, SSIM (data_range 2) and iteration of a stream's choice in a summary.json entry:
    ``oracle`` is the stream's peak, another rule its ``stopping`` entry."""
    s = (entry.get("streams") or {}).get(stream) or {}
    c, pre = (s, "peak_") if rule == "oracle" else ((s.get("stopping") or {}).get(rule) or {}, "")
    return {"psnr": c.get(f"{pre}psnr"), "ssim": c.get(f"{pre}ssim_dr2"), "iteration": c.get(f"{pre}iteration")}


def read_png(path: Path) -> np.ndarray | None:
    try:
        return load_image(path)
    except (FileNotFoundError, ValueError, OSError):
        return None


def recorded_input(job_dir: Path, entry: dict, image: str) -> tuple:
    """(x, y, (PSNR, SSIM) of y, why not) of one image from its record: y, the truth and y's
    numbers that the runner keeps beside the restored images (summary.json's ``input``,
    :func:`bpdip.records.input_paths`), never re-made here. Older records keep none."""
    recorded = entry.get("input") if isinstance(entry.get("input"), dict) else {}
    paths = {**input_paths(image), **recorded}
    if not (job_dir / paths["y"]).is_file():
        return None, None, None, (f"these records keep no observation ({paths['y']}, recorded by runs since "
                                  "issue 28)")
    try:
        y = np.load(job_dir / paths["y"], allow_pickle=False).astype(np.float64)
    except (OSError, ValueError) as exc:
        return None, None, None, f"{paths['y']} is unreadable ({exc})"
    return read_png(job_dir / paths["truth"]), y, (recorded.get("psnr"), recorded.get("ssim_dr2")), ""


def central_crop(a: np.ndarray | None, shape) -> np.ndarray | None:
    """``a`` cut to ``shape`` (H, W) around its centre (y's frame of a valid-boundary run);
    None when it is smaller."""
    try:
        return None if a is None else center_crop(a, tuple(shape[:2]))
    except ValueError:
        return None


def image_names(settings: VisualSettings, cells) -> list[str]:
    """The images to draw for a setting: the first / every image of its means, or the named."""
    used = list(dict.fromkeys(n for c in cells for n in c.used))
    have = list(dict.fromkeys([*used, *(n for c in cells for r in c.seeds.values() for n in r.images)]))
    out = []
    for item in settings.images:
        out += have[:1] if item == "first" else have if item == "all" else [item]
    return list(dict.fromkeys(out))


def choose_seed(cells, image: str):
    """The lowest seed with a complete record of ``image`` in any of the losses."""
    seeds = {r.seed for c in cells for r in c.seeds.values()
             if image in r.images and r.images[image].status == "complete"}
    return min(seeds, key=seed_key) if seeds else None


def loss_panel(loss: str, key: str, record) -> Panel:
    """One loss's panel of row ``key`` ("<stream>.<rule>") from its (job dir, summary entry):
    the image the record saved of that choice (summary.json's ``images``) with its numbers.
    Records older than the output streams (schema 3) save none."""
    job, entry = record
    stream, rule = key.split(".")
    if stream == "restored":
        stream = entry.get("restored_stream") or "perturbed"
    rel = (entry.get("images") or {}).get(f"{stream}.{rule}")
    if rel is None:
        return Panel(LOSS_LABELS[loss], None, note=f"no {stream}.{rule} image")
    pixels = read_png(job / rel)
    if pixels is None:
        return Panel(LOSS_LABELS[loss], None, note=f"image missing ({(job / rel).name})")
    values = choice_values(entry, stream, rule)
    it = values["iteration"]
    return Panel(LOSS_LABELS[loss], pixels, values["psnr"], values["ssim"], f"@{it}" if it is not None else "")


def make_row(key: str, panels: list[Panel], entries: list[dict]) -> Row:
    """The row's key and its words (:data:`ROW_WORDS`) for the caption and over the row."""
    stream = "/".join(sorted({e.get("restored_stream") or "perturbed" for e in entries}))
    label, short = ROW_WORDS[key]
    return Row(key, label.format(stream=stream), short.format(stream=stream), panels)


def build_visual(here: list, kernel: str, var: float, image: str, settings: VisualSettings) -> Visual | None:
    """One figure's panels from the records of the setting's cells ``here`` (None: no loss
    has an image of it)."""
    cells = {c.cell.loss: c for c in here if c.cell.loss in LOSSES}
    seed = choose_seed(list(cells.values()), image)
    if seed is None:
        return None
    found = {loss: c.seeds[seed].images.get(image) for loss, c in cells.items() if seed in c.seeds}
    # loss -> (job dir, summary.json entry) of its complete record of the image
    records = {loss: (Path(i.source), i.summary) for loss, i in found.items() if i and i.status == "complete"}
    rows = []
    for key in settings.rows:
        panels = [loss_panel(loss, key, records[loss]) if loss in records else
                  Panel(LOSS_LABELS[loss], None, note="no record" if loss not in cells or not cells[loss].sources
                        else f"no complete record (seed {seed})") for loss in LOSSES]
        if any(p.image is not None for p in panels):
            rows.append(make_row(key, panels, [e for _, e in records.values()]))
    if not rows:
        return None
    shape = next(p.image.shape for p in rows[0].panels if p.image is not None)
    # x, y and y's numbers from the first record that kept the truth, else the last record's
    # (read one at a time: each is a y.npy and a PNG)
    for job, entry in records.values():
        x, y, numbers, why = recorded_input(job, entry, image)
        if x is not None:
            break
    x, y = central_crop(x, shape), central_crop(y, shape)
    notes = []
    if x is None and y is not None:
        notes.append("no truth panel: these records have no ground truth (data=observed: the file is y itself)")
    elif x is None:
        notes.append(f"truth and blurred input not shown: {why or 'their size does not fit the restored images'}")
    truth = Panel("Truth x", x, note="reference") if x is not None else None
    blurred = None
    if y is not None:
        psnr, ssim = numbers if x is not None else (None, None)
        blurred = Panel("Blurred input y", np.clip(y, 0.0, 1.0), psnr, ssim,
                        "its PSNR is not in the record" if psnr is None and x is not None else "")
    region, region_note = pick_region(rows, truth, settings.region, shape)
    return Visual(kernel, var, image, seed, truth, blurred, rows, region, region_note, notes)


def pick_region(rows: list[Row], truth: Panel | None, configured, shape) -> tuple[tuple[int, int, int], str]:
    """The close-up window: the configured one where it fits, else :func:`detail_region`'s."""
    h, w = shape[:2]
    note = ""
    if configured is not None:
        top, left, size = configured
        if top + size <= h and left + size <= w:
            return configured, "the configured window"
        note = f"the configured window {top},{left},{size} does not fit the {h}x{w} image; "
    images = [p.image for p in rows[0].panels if p.image is not None]
    region = detail_region(images, truth.image if truth else None, max(MIN_WINDOW, round(WINDOW_FRACTION * min(h, w))))
    how = "where the methods' local errors differ most" if truth else "where the methods differ most"
    return region, note + f"chosen automatically: {how}"


def build_visuals(report) -> tuple[list[Visual], list[str]]:
    """Every figure the report's settings ask for, and notes on what was asked but not found."""
    settings = report.visual_settings
    visuals, notes = [], []
    cells = [c for c in report.cells if not c.cell.is_sr]
    for kernel, var in settings.wanted(cells):
        here = [c for c in cells if (c.cell.kernel, c.cell.noise_var) == (kernel, var)]
        if not any(c.sources for c in here):
            notes.append(f"{kernel} / var {var:g}: no records")
            continue
        for name in image_names(settings, here):
            v = build_visual(here, kernel, var, name, settings)
            if v is None:
                notes.append(f"{kernel} / var {var:g} / image {name}: no complete record with a saved image")
            else:
                visuals.append(v)
    return visuals, notes


# ----------------------------------------------------------------------------- the figure

# layout in inches: panel width, gaps above the image (title), image to close-up, under
# the close-up (two lines of numbers), row heading, the figure's title; margins
PANEL_W, TITLE_H, ZOOM_GAP, TEXT_H, HEAD_H, SUPTITLE_H, MARGIN, COL_GAP = 1.9, 0.24, 0.06, 0.42, 0.22, 0.4, 0.12, 0.1


def figure(v: Visual):
    """The matplotlib Figure: one row of six panels (truth, blurred input, the four losses)
    per row of ``v``, each image over its close-up with the numbers under it. Axes are
    placed in inches so that the panels line up whatever the image's aspect."""
    from matplotlib.patches import Rectangle

    from bpdip.report.figure import plt

    h, w = next(p.image.shape[:2] for p in v.rows[0].panels if p.image is not None)
    cols = 2 + len(LOSSES)
    image_h = PANEL_W * h / w
    row_h = HEAD_H + TITLE_H + image_h + ZOOM_GAP + PANEL_W + TEXT_H
    fig_w = 2 * MARGIN + cols * PANEL_W + (cols - 1) * COL_GAP
    fig_h = SUPTITLE_H + len(v.rows) * row_h + MARGIN
    fig = plt.figure(figsize=(fig_w, fig_h))

    def axes(col, y_top, height):  # y_top: inches from the figure's top
        x = MARGIN + col * (PANEL_W + COL_GAP)
        ax = fig.add_axes((x / fig_w, 1 - (y_top + height) / fig_h, PANEL_W / fig_w, height / fig_h))
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    top, left, size = v.region
    for r, row in enumerate(v.rows):
        y0 = SUPTITLE_H + r * row_h
        fig.text(MARGIN / fig_w, 1 - (y0 + HEAD_H * 0.6) / fig_h, f"Row {r + 1}: {row.short}", fontsize=8.5,
                 ha="left", va="center", style="italic")
        panels = ([v.truth, v.blurred] if r == 0 else [None, None]) + row.panels
        numbered = [p.psnr for p in row.panels if p.image is not None and p.psnr is not None]
        best = max(numbered) if numbered else None
        for c, panel in enumerate(panels):
            if panel is None:
                continue
            ax = axes(c, y0 + HEAD_H + TITLE_H, image_h)
            ax.set_title(panel.title, fontsize=9)
            if panel.image is None:
                ax.set_frame_on(False)
                ax.text(0.5, 0.5, panel.text(), ha="center", va="center", fontsize=8, color="0.4",
                        transform=ax.transAxes, wrap=True)
                continue
            ax.imshow(np.clip(panel.image, 0, 1), interpolation="nearest")
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False, ec=REGION_COLOR, lw=1.0))
            zoom = axes(c, y0 + HEAD_H + TITLE_H + image_h + ZOOM_GAP, PANEL_W)
            zoom.imshow(np.clip(panel.image[top:top + size, left:left + size], 0, 1), interpolation="nearest")
            for spine in zoom.spines.values():
                spine.set_edgecolor(REGION_COLOR)
            bold = c >= 2 and best is not None and panel.psnr == best
            zoom.set_xlabel(panel.text(), fontsize=8, fontweight="bold" if bold else "normal", labelpad=2)
    fig.suptitle(v.title, fontsize=10, y=1 - 0.5 * SUPTITLE_H / fig_h, va="center")
    return fig


def save_visuals(report, stem) -> list:
    """Write every figure of the report as ``<stem>-<kernel>-<var>-<image>`` .png and .pdf."""
    from bpdip.report.figure import save_figure

    stem = Path(stem)
    return [p for v in report.visuals[0] for p in save_figure(figure(v), stem.with_name(v.file_stem(stem.name)))]


# ----------------------------------------------------------------------------- report text

def caption(v: Visual) -> str:
    rows = "; ".join(f"row {i + 1}: {row.label}" for i, row in enumerate(v.rows)) if len(v.rows) > 1 else \
        v.rows[0].label
    top, left, size = v.region
    parts = [f"Truth x, blurred input y and the four losses' restorations of image {v.image} (seed {v.seed}); "
             f"{rows}.",
             "Under each panel: PSNR [dB] / SSIM (data_range 2, as Table I) from the record of that image "
             "(the input's computed against x with bpdip.metrics), and the iteration; bold: the row's best PSNR.",
             f"Close-up: the {size}x{size} window at row {top}, column {left} (yellow frame), {v.region_note}."]
    parts += [n[0].upper() + n[1:] + "." for n in v.notes]
    return " ".join(parts)


def md_visual(report) -> str:
    visuals, notes = report.visuals
    if not visuals:
        return ""
    parts = ["## Restored images (Figs. 2-5)", "",
             "The paper's Figs. 2-5 from these records: for each setting, the truth, the blurred input and the "
             "images of LS, LS-TV, BP and BP-TV, each over a close-up of the same window. Numbers are the records' "
             "own (never recomputed from the 8-bit PNGs). Settings and images: `--visual`, `--visual-images`, "
             "`--visual-region` (bpdip.report.visual)."]
    for v in visuals:
        stem = v.file_stem()
        parts += ["", f"### {v.title}", "", f"![{v.title}]({stem}.png)", "",
                  f"{caption(v)} PDF: [{stem}.pdf]({stem}.pdf)."]
    if notes:
        parts += ["", "Not drawn: " + "; ".join(notes) + "."]
    return "\n".join(parts)


def tex_visual(report) -> str:
    visuals, _ = report.visuals
    if not visuals:
        return ""
    lines = ["% restored images (bpdip.report.visual); needs \\usepackage{graphicx}"]
    for v in visuals:
        name = f"{v.file_stem()}.pdf"
        lines += ["\\begin{figure}[p]", "\\centering",
                  f"\\IfFileExists{{{name}}}{{\\includegraphics[width=\\linewidth,height=0.82\\textheight,"
                  f"keepaspectratio]{{{name}}}}}{{\\fbox{{{tex_escape(name)} was not written (report built "
                  f"without figures)}}}}",
                  f"\\caption{{{tex_escape(v.title)}. {tex_escape(caption(v))}}}",
                  f"\\label{{fig:{v.file_stem()}}}", "\\end{figure}", ""]
    return "\n".join(lines)
