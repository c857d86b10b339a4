"""The stopping table for each output stream, and issue 20's two targets.

Per setting, stream and rule: :func:`bpdip.curves.rule_statistics` on the stream's choices
(summary ``streams.<stream>.stopping.<rule>``; each gap is to that stream's own oracle).
Issue 20's targets over the paper's grid:

(a) the averaged output beats the perturbed one by >= +0.5 dB at the oracle, on the mean
    over the settings of the per-setting gains of "Table I with the averaged output";
(b) ES-WMV or ES-EMV on the averaged stream within 0.3 dB of that stream's oracle: the mean
    over the settings of the rule's mean gap is >= -0.3 dB.

Where one is missed, the report lists per setting what decides it.
"""

from __future__ import annotations

import math

import pandas as pd

from bpdip.report.render import Alt, Table, fmt, md_table, tex_escape
from bpdip.report.stopping import CSV_COLUMNS as RULE_COLUMNS, KEY, _grid, cell_entries, rule_rows, stopping_rows
from bpdip.report.streams import GAIN_TARGET_DB, OTHER_STREAMS, gain_summary, setting_count, setting_label
from bpdip.stopping import ONLINE
from bpdip.curves import TOLERANCE_DB

GAP_TARGET_DB = 0.3  # issue 20 (b)
TARGET_RULES = ("wmv", "emv")
CSV_COLUMNS = [*KEY, "stream", *RULE_COLUMNS[len(KEY):]]


def stream_entries(c, stream: str) -> list[dict]:
    """The cell's summary entries (those in its means) with ``stopping`` the stream's
    choices; the rule's ``stopped`` / ``stop_iteration`` kept from its own record. Images
    whose record lacks the stream are left out (``n`` says so)."""
    out = []
    for e in cell_entries(c):
        choices = ((e.get("streams") or {}).get(stream) or {}).get("stopping")
        if isinstance(choices, dict):
            own = e.get("stopping") if isinstance(e.get("stopping"), dict) else {}
            out.append({**e, "stopping": {rule: {**(own.get(rule) or {}), **choice}
                                          for rule, choice in choices.items() if isinstance(choice, dict)}})
    return out


def watched_entries(c, stream: str) -> list[dict]:
    """Issue 32: the cell's entries with ``stopping`` the choices of the rules that watched
    ``stream`` themselves (summary ``choices.<stream>``, its oracle the stream's own)."""
    return [{**e, "stopping": e["choices"][stream]} for e in cell_entries(c)
            if isinstance(e.get("choices"), dict) and isinstance(e["choices"].get(stream), dict)]


def stream_stopping_table(report) -> pd.DataFrame | None:
    """stopping_streams.csv: one row per (setting, stream, rule); None (no file) when no
    record has the streams' choices. A rule that watched a stream other than the perturbed
    one itself (issue 32) has its own rows, ``<rule>@<stream>`` (e.g. ``emv@average``)."""
    rows = []
    for c in report.cells:
        if c.status in ("missing", "conflict"):
            continue
        for stream in ("perturbed", *OTHER_STREAMS):
            entries = stream_entries(c, stream)
            rows += rule_rows(c, entries, stream=stream)
            if stream != "perturbed":  # the online rules that watched this stream themselves (issue 32)
                rows += rule_rows(c, watched_entries(c, stream), entries, ONLINE, stream=stream,
                                  rule_suffix=f"@{stream}")
    return pd.DataFrame(rows, columns=CSV_COLUMNS) if rows else None


def targets(report, frame: pd.DataFrame | None) -> dict:
    """Issue 20's targets (module docstring); NaN where the records do not tell."""
    gains = gain_summary(report, "average")
    out = {"gain": gains, "gain_met": gains["n"] > 0 and gains["mean"] >= GAIN_TARGET_DB,
           "oracle_gain": math.nan, "oracle_n": 0, "rules": {}, "gap_met": False}
    if frame is None:
        return out
    avg, pert = _streams(frame)
    both = (avg[avg.rule == "oracle"]["mean_psnr"] - pert[pert.rule == "oracle"]["mean_psnr"]).dropna()
    out.update(oracle_gain=float(both.mean()), oracle_n=len(both))
    for rule in TARGET_RULES:
        gaps = avg[avg.rule == rule]["gap_db"].dropna()
        if len(gaps):
            out["rules"][rule] = {"mean_gap_db": float(gaps.mean()), "n": len(gaps),
                                  "met": float(gaps.mean()) >= -GAP_TARGET_DB}
    out["gap_met"] = any(v["met"] for v in out["rules"].values())
    return out


def _streams(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The grid's rows (:func:`_grid`) of the averaged and of the perturbed stream."""
    grid = _grid(frame)
    return grid[grid.stream == "average"], grid[grid.stream == "perturbed"]


def per_setting_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Per setting of the grid, on the averaged stream: its oracle's mean PSNR and iteration,
    and per target rule the mean gap and the mean chosen iteration minus the oracle's, with
    the rule's gap on the perturbed stream beside it."""
    avg, pert = _streams(frame)
    oracle = avg[avg.rule == "oracle"]
    out = pd.DataFrame({"n": oracle["n"], "oracle_psnr": oracle["mean_psnr"], "oracle_iteration": oracle["iteration"]})
    for rule in TARGET_RULES:
        r, p = avg[avg.rule == rule], pert[pert.rule == rule]
        out[f"{rule}_gap_db"] = r["gap_db"]
        out[f"{rule}_minus_oracle_iterations"] = r["iteration"] - oracle["iteration"]
        out[f"{rule}_perturbed_gap_db"] = p["gap_db"]
    return out.reset_index()


def streams_table_text(frame: pd.DataFrame) -> Table:
    rules, rows = stopping_rows(frame, extra_keys=("stream",))
    return Table([Alt("setting", "Setting"), Alt("stream", "Stream"), Alt("n", "$n$"), *rules], rows,
                 "lll" + "c" * len(rules), (
                     "As the stopping table above, per output stream (summary `streams.<stream>.stopping`): mean PSNR "
                     "of the stream's image at the rule's chosen iteration (gap to that stream's own oracle, share of "
                     f"images within {TOLERANCE_DB} dB of it) @ mean chosen iteration; n = images × seeds. Streams: "
                     "perturbed (the paper's f(z + 0.03·n)), clean f(z), average (the exponential average). All "
                     "rows: `stopping_streams.csv`."), "tab:stopping-streams",
                 title="Stopping rules on each output stream")


def md_stopping_streams(report) -> str:
    frame = report.stopping_streams
    if frame is None:
        return ""
    return "\n".join([streams_table_text(frame).section(), "", *md_targets(report, frame)])


def target_sentences(t: dict) -> list[tuple[str, str, str]]:
    """Issue 20's targets (a) and (b) from :func:`targets`' ``t``, each as (the target,
    'met' or 'missed', what the records show): the Markdown and the LaTeX write them."""
    g = t["gain"]
    gain = (f"{g['mean']:+.2f} dB over {setting_count(g['n'])}" if g["n"] else "no setting has both streams")
    oracle = (f"; at each image's own oracle {t['oracle_gain']:+.2f} dB over {setting_count(t['oracle_n'])}"
              if t["oracle_n"] else "")
    gaps = "; ".join(f"ES-{rule.upper()} {v['mean_gap_db']:+.2f} dB over {setting_count(v['n'])}"
                     for rule, v in t["rules"].items()) or "no rule's choice on the averaged stream is on record"
    a = (f"(a) the averaged output beats the perturbed output by at least +{GAIN_TARGET_DB} dB at the oracle, "
         "on the mean over the settings")
    b = (f"(b) ES-WMV or ES-EMV on the averaged stream within {GAP_TARGET_DB} dB of that stream's oracle "
         "(mean gap over the settings)")
    return [(a, "met" if t["gain_met"] else "missed",
             f"gain at Table I's oracle (the best common iteration) {gain}{oracle}"),
            (b, "met" if t["gap_met"] else "missed", gaps)]


def md_targets(report, frame: pd.DataFrame) -> list[str]:
    t = targets(report, frame)
    g = t["gain"]
    lines = [f"**Issue 20's targets** (over the paper's grid; {GAIN_TARGET_DB} dB and {GAP_TARGET_DB} dB):", "",
             *(f"- {target}: **{verdict}**, {shown}." for target, verdict, shown in target_sentences(t)), ""]
    if not t["gain_met"] and g["n"]:
        lines += [f"Why (a) is missed: the per-setting gains are in \"Table I with the averaged output\" (lowest "
                  f"{g['min'][1]:+.2f} dB at {setting_label(g['min'][0])}, {g['reached']} of {g['n']} settings reach "
                  f"+{GAIN_TARGET_DB} dB); by loss: {g['by_loss']}.", ""]
    if not t["gap_met"] and t["rules"]:
        per = per_setting_gaps(frame)
        by_rule = {"gap_db": ("gap [dB]", 2), "minus_oracle_iterations": ("− oracle [it]", 0),
                   "perturbed_gap_db": ("gap, perturbed [dB]", 2)}
        header = ["setting", "n", "average oracle [dB]", "@ oracle",
                  *(f"{rule} {h}" for rule in TARGET_RULES for h, _ in by_rule.values())]
        rows = [[setting_label((r.loss, r.kernel, r.noise_var)), str(r.n), fmt(r.oracle_psnr, 2),
                 fmt(r.oracle_iteration, 0), *(fmt(getattr(r, f"{rule}_{col}"), digits, True)
                                               for rule in TARGET_RULES for col, (_, digits) in by_rule.items())]
                for r in per.itertuples()]
        lines += ["Why (b) is missed, per setting on the averaged stream: the oracle's mean PSNR and iteration; "
                  "per rule the mean gap to it, how many iterations the rule's mean choice lies after (+) or "
                  "before (−) the oracle's, and the same rule's gap on the perturbed stream.", "",
                  md_table(header, rows, "l" + "r" * (len(header) - 1)), ""]
    return lines


def tex_stopping_streams(report) -> str:
    frame = report.stopping_streams
    if frame is None:
        return ""
    items = [tex_escape(f"{target}: {verdict}, {shown}.")
             for target, verdict, shown in target_sentences(targets(report, frame))]
    return "\n".join([streams_table_text(frame).latex(), "\\noindent Issue 20's targets over the paper's grid:",
                      "\\begin{itemize}", *(f"\\item {item}" for item in items), "\\end{itemize}", ""])
