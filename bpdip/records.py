"""Run records on disk: the files that let anyone rebuild Table I without W&B.

A job's output directory holds (schema version 3; versions 1 and 2 are still read):

``metrics.csv``
    One row per logged iteration and image, columns ``CURVE_COLUMNS``:
    image, iteration, psnr, ssim (data range 1), ssim_dr2 (data range 2, the paper's
    old scikit-image default), loss, seconds (wall time since the image's start), then
    the statistics the stopping rules watch (``bpdip.stopping``): wmv_var (ES-WMV's window
    variance), emv (ES-EMV's moving variance), residual (||y - A x||^2 per measurement),
    and psnr_y (Y-channel PSNR, super-resolution only). Schema 3 adds the other two output
    streams (bpdip.streams; the columns above are the perturbed stream's): clean_psnr,
    clean_ssim, clean_ssim_dr2, average_psnr, average_ssim, average_ssim_dr2, clean_psnr_y,
    average_psnr_y (SR only). Metrics without ground truth (``data=observed``) and
    statistics not yet defined are empty; older files lack the stream columns (read as NaN).
``summary.json``
    ``{"schema": 1, "run": {...}, "images": {name: {...}}}`` where ``run`` holds
    ``cell`` (kernel, noise_var, loss), ``config_hash``, ``git_commit``, ``device``,
    ``torch_version``, ``iterations``, ``log_every``, ``status``; each image holds
    ``status`` (complete | failed | running), ``peak_psnr``, ``peak_iteration``,
    ``peak_ssim``, ``peak_ssim_dr2``, ``final_psnr``, ``final_ssim``, ``final_ssim_dr2``,
    ``runtime_s``, ``seconds_per_iteration``, ``iterations``, ``error``, and (schema 2)
    ``stopping`` (per rule: ``iteration``, ``stopped``, ``stop_iteration``, and with ground
    truth ``psnr``, ``ssim``, ``ssim_dr2`` of the image it chose), ``stopped_early`` (training
    ended at ``stop.early``'s rule) and ``restored_from`` (that rule and iteration, when the
    restored image is its candidate; the ``final_*`` values then describe that image and
    ``last_*`` the last iterate); the runner adds ``run_id`` (the image's
    stable id in the results store, see :mod:`bpdip.store`), ``reused`` (true when the
    record was taken from the store instead of trained in this job) and ``bit_depth``
    (the input file's bits per sample, 8 or 16: :func:`bpdip.data.read_image`).
    Super-resolution (``run.cell.task`` = ``sr-x4`` etc.) adds per image the Y-PSNR values of
    :func:`image_summary` and ``baseline``: the bicubic upsampling of y (``method``,
    ``psnr``, ``psnr_y``, ``ssim``, ``ssim_dr2``), the SR table's baseline row.
    Schema 3 (issue 20) keeps every key above with its meaning (``peak_*``, ``stopping``:
    the perturbed stream; ``final_*``: the restored image that was written) and adds per
    image ``restored_stream`` (``output.restore``), ``streams`` (per stream ``peak_psnr``,
    ``peak_iteration``, ``peak_ssim``, ``peak_ssim_dr2``, ``final_psnr``, ``final_ssim``,
    ``final_ssim_dr2`` and ``stopping``: {rule: {iteration, psnr, ssim, ssim_dr2}}, the
    stream's image at the rule's iteration, see bpdip.streams; for SR also ``peak_psnr_y``,
    ``peak_psnr_y_iteration``, ``psnr_y_at_peak``, ``final_psnr_y`` as above, and ``psnr_y``
    in each rule's choice) and
    ``images`` ({"<stream>.<rule>": "images/<image>/<stream>.<rule>.png"}, relative to the
    job directory); the run block gains ``output`` ({restore, ema}).
    Issue 32 (still schema 3: every older key kept) adds per image ``choices``: {stream:
    {rule: {iteration, stopped, stop_iteration, psnr, ssim, ssim_dr2}}}, each stream's own
    oracle and fixed and every online rule that watched that stream (``stop.streams``; the
    clean stream has oracle and fixed only), the stream's image at the rule's choice; and
    ``restored``: {stream, rule, iteration}, what the written image is. metrics.csv gains
    the statistics of bp_discrepancy (``fidelity``) and of the rules watching the average
    (``average_wmv_var``...: ``bpdip.stopping.statistic_columns``), after every older column,
    in the order the curve records hold them; a reader takes any such column.

Every file is written atomically (temporary file + rename), so a killed job leaves
either the previous version or the new one, never half a file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path

from bpdip import curves

SCHEMA = 3
SCHEMAS = (1, 2, 3)  # readable
CURVE_COLUMNS_V1 = ("image", "iteration", "psnr", "ssim", "ssim_dr2", "loss", "seconds")
STAT_COLUMNS = ("wmv_var", "emv", "residual", "psnr_y")
CURVE_COLUMNS_V2 = (*CURVE_COLUMNS_V1, *STAT_COLUMNS)
# schema 3: the clean and average streams (bpdip.streams), after every older column; a reader
# takes any of them after CURVE_COLUMNS_V2 (files written by hand or by later versions)
STREAM_COLUMNS = tuple(f"{s}_{k}" for s in ("clean", "average") for k in ("psnr", "ssim", "ssim_dr2")) + \
    ("clean_psnr_y", "average_psnr_y")
STREAM_CURVE_COLUMNS = STREAM_COLUMNS  # the report's name for them
CURVE_COLUMNS = (*CURVE_COLUMNS_V2, *STREAM_COLUMNS)
# issue 32: each stopping rule declares its own statistic (bpdip.stopping.statistic_columns);
# they follow CURVE_COLUMNS in the order the curve records hold them, so records never list
# the rules (a new rule is a new column, not a change here), and a reader takes any of them
EXTRA_COLUMN = re.compile(r"[a-z][a-z0-9_]*\Z")


class CorruptRecord(ValueError):
    """A record file exists but cannot be trusted (truncated, wrong schema, bad values)."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _clean(value):
    """JSON has no NaN/inf: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptRecord(f"{path}: {exc}") from None


def curve_rows(image: str, curve: list[dict]) -> list[dict]:
    """Curve records of one image as metrics.csv rows."""
    return [{"image": image, **{k: rec.get(k) for k in CURVE_COLUMNS[1:]},
             **{k: v for k, v in rec.items() if k not in CURVE_COLUMNS}} for rec in curve]


def write_metrics_csv(path: str | Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in CURVE_COLUMNS))
    writer = csv.DictWriter(buf, fieldnames=[*CURVE_COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_metrics_csv(path: str | Path) -> list[dict]:
    """Rows of a metrics.csv with numbers parsed; raises CorruptRecord on a bad file."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = tuple(reader.fieldnames or ())
            extra = fields[len(CURVE_COLUMNS_V2):] if fields[:len(CURVE_COLUMNS_V2)] == CURVE_COLUMNS_V2 else None
            # absent from older files, and any later statistic: neither reads as corrupt
            if fields != CURVE_COLUMNS_V1 and (extra is None or len(set(fields)) < len(fields)
                                               or not all(EXTRA_COLUMN.match(c) for c in extra)):
                raise CorruptRecord(f"{path}: columns {reader.fieldnames}, expected {list(CURVE_COLUMNS_V2)} "
                                    f"(then stream columns such as {list(STREAM_COLUMNS[:2])} and rule statistics)")
            rows = []
            for row in reader:
                if None in row.values() or None in row:
                    raise CorruptRecord(f"{path}: truncated row {row}")
                parsed = {"image": row["image"], "iteration": int(row["iteration"])}
                # a version-1 file lacks the statistics (NaN); stream columns only where the file has them
                for key in (*CURVE_COLUMNS_V2[2:], *(extra or ())):
                    value = row.get(key, "")
                    parsed[key] = float(value) if value not in ("", "None") else math.nan
                rows.append(parsed)
            return rows
    except (OSError, ValueError) as exc:
        if isinstance(exc, CorruptRecord):
            raise
        raise CorruptRecord(f"{path}: {exc}") from None


def image_summary(result) -> dict:
    """The summary.json entry of one image from a :class:`bpdip.loop.Result`.

    Super-resolution (a curve with ``psnr_y``) adds ``peak_psnr_y`` and ``peak_psnr_y_iteration``
    (the best logged Y-PSNR and where: the SR table's oracle, which picks by Y-PSNR),
    ``psnr_y_at_peak`` (the Y-PSNR at the RGB-PSNR peak), ``final_psnr_y`` and
    ``last_psnr_y``; a deblurring entry has exactly the keys it always had."""
    peak = result.peak or {}
    entry = {
        "status": result.status,
        "peak_psnr": peak.get("psnr"),
        "peak_iteration": peak.get("iteration"),
        "peak_ssim": peak.get("ssim"),
        "peak_ssim_dr2": peak.get("ssim_dr2"),
        "final_psnr": result.final.get("psnr"),
        "final_ssim": result.final.get("ssim"),
        "final_ssim_dr2": result.final.get("ssim_dr2"),
        "runtime_s": result.runtime_s,
        "seconds_per_iteration": result.seconds_per_iteration,
        "last_psnr": result.last.get("psnr"),
        "last_ssim": result.last.get("ssim"),
        "last_ssim_dr2": result.last.get("ssim_dr2"),
        "iterations": result.iterations,
        "error": result.error,
        "stopping": result.stopping,
        "stopped_early": result.stopped_early,
        "restored_from": result.restored_from,
    }
    if "psnr_y" in result.final or any("psnr_y" in r for r in result.curve):
        best = curves.best(result.curve, "psnr_y") or {}
        entry.update(peak_psnr_y=best.get("psnr_y"), peak_psnr_y_iteration=best.get("iteration"),
                     psnr_y_at_peak=peak.get("psnr_y"), final_psnr_y=result.final.get("psnr_y"),
                     last_psnr_y=result.last.get("psnr_y"))
    if result.choices:
        entry.update(choices=result.choices, restored=result.restored)
    if result.streams:
        entry.update(restored_stream=result.restored_stream, streams=stream_entries(result),
                     images={key: image_path(result.name, key) for key in result.stream_images})
    return entry


def image_path(image: str, key: str) -> str:
    """Where a stream image ("<stream>.<rule>") of ``image`` lies, relative to the job directory."""
    return f"images/{image}/{key}.png"


# a job's records as a W&B artifact (bpdip.loggers.records_artifact; bpdip.report.wandb_source)
WANDB_ARTIFACT_TYPE = "bpdip-records"
RECORD_FILES = ("summary.json", "metrics.csv", "config.yaml")
RECORD_DIRS = ("images", "restored")  # the stream images, y and the truth; the restored PNGs


def input_paths(image: str) -> dict:
    """Where the job keeps what its network saw (issue 28): ``y``, the observation exactly as
    the loss saw it (float32 .npy, not clipped), and ``truth``, the ground truth on y's frame
    (8-bit PNG: the data's own precision), relative to the job directory."""
    return {"y": f"images/{image}/y.npy", "truth": f"images/{image}/truth.png"}


def stream_entries(result) -> dict:
    """summary.json's ``streams`` of one image (schema 3): per stream its logged peak (the
    stream's own best PSNR), its final value and every rule's choice evaluated on it."""
    from bpdip.curves import PREFIX, stream_peak, stream_values

    out = {}
    for stream, rec in result.streams.items():
        peak = stream_peak(result.curve, stream) or {}
        values = stream_values(peak, stream) if peak else {}
        e = {"peak_psnr": values.get("psnr"), "peak_iteration": peak.get("iteration"),
             "peak_ssim": values.get("ssim"), "peak_ssim_dr2": values.get("ssim_dr2"),
             "final_psnr": rec["final"].get("psnr"), "final_ssim": rec["final"].get("ssim"),
             "final_ssim_dr2": rec["final"].get("ssim_dr2")}
        key = f"{PREFIX[stream]}psnr_y"
        if "psnr_y" in rec["final"] or any(key in r for r in result.curve):
            # as the top-level keys: the best logged Y-PSNR and where, the Y-PSNR at the RGB peak
            best = curves.best(result.curve, key) or {}
            e.update(peak_psnr_y=best.get(key), peak_psnr_y_iteration=best.get("iteration"),
                     psnr_y_at_peak=values.get("psnr_y"), final_psnr_y=rec["final"].get("psnr_y"))
        e["stopping"] = rec["stopping"]
        out[stream] = e
    return out


# --- job and store records (runner) -------------------------------------------------

RUN_STATUSES = ("running", "complete", "failed")
IMAGE_STATUSES = ("running", "complete", "failed")


def new_summary(run: dict) -> dict:
    """An empty summary (schema :data:`SCHEMA`) with the given ``run`` block."""
    return {"schema": SCHEMA, "run": dict(run), "images": {}}


def validate_summary(obj, path: str | Path = "summary.json") -> dict:
    """Check the layout of a parsed summary.json; raise CorruptRecord if it is not schema 1, 2 or 3."""
    if not isinstance(obj, dict) or obj.get("schema") not in SCHEMAS:
        got = obj.get("schema") if isinstance(obj, dict) else type(obj).__name__
        raise CorruptRecord(f"{path}: schema {got!r}, expected one of {list(SCHEMAS)}")
    run, images = obj.get("run"), obj.get("images")
    if not isinstance(run, dict) or not isinstance(images, dict):
        raise CorruptRecord(f"{path}: lacks the 'run' or 'images' object")
    cell = run.get("cell")
    if not isinstance(cell, dict) or not {"kernel", "noise_var", "loss"} <= set(cell):
        raise CorruptRecord(f"{path}: run.cell must hold kernel, noise_var and loss")
    for name, entry in images.items():
        if not isinstance(entry, dict) or entry.get("status") not in IMAGE_STATUSES:
            raise CorruptRecord(f"{path}: image {name!r} has no valid status")
    return obj


def read_summary(path: str | Path) -> dict:
    """A validated summary.json; CorruptRecord if missing, truncated or malformed."""
    return validate_summary(read_json(path), path)


def write_png(path: str | Path, image, bits: int = 8) -> None:
    """An (H, W, 3) float image in [0, 1] as a PNG of ``bits`` (8 or 16) per sample,
    rounded, written atomically. The restored image is written with 16 (issue 32: rounding
    to 8 bits alone costs about 0.1 dB at 42 dB, the nearly sharp photographs' level)."""
    import numpy as np
    from PIL import Image

    arr = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if bits == 16:
        atomic_write_bytes(path, png16(np.round(arr * 65535.0).astype(">u2")))
        return
    buf = io.BytesIO()
    Image.fromarray(np.round(arr * 255.0).astype(np.uint8)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def png16(samples) -> bytes:
    """A 16-bit RGB PNG of big-endian uint16 ``samples`` (H, W, 3), from the PNG
    specification (W3C PNG 2nd ed., 11.2 and 5.3): signature, IHDR (bit depth 16, colour
    type 2), one zlib-deflated IDAT of scanlines each led by filter byte 0, IEND; every chunk
    is length, type, data, CRC-32 of type and data. Pillow cannot write 16-bit RGB."""
    import struct
    import zlib

    h, w = samples.shape[:2]
    raw = b"".join(b"\x00" + samples[r].tobytes() for r in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_npy(path: str | Path, array) -> None:
    """A NumPy array as .npy, written atomically."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
