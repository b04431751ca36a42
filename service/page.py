"""The status page's HTML: the light, its reasons, every field against its thresholds over recent
runs, the model's history, and each run's reports, rendered on the server (no JavaScript, no CDN).

Pure functions from already-read data (runs from `core.runs.RunStore.history`, model events, the
registry's versions, the policy) to one HTML string; the charts are inline SVG drawn here, so the
page needs no chart library and reads the same with JavaScript off. service.routes.pages reads the
stores and calls `render_page`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.runs import is_drill
from monitoring.policy import PolicySettings, Rule, Signal
from service.fleet_view import COLOUR_ORDER, FleetFigures

COLOURS = {"green": "#1a7f37", "yellow": "#9a6700", "red": "#cf222e", "not_enough_data": "#57606a", "unknown": "#57606a"}
FILL = {"green": "#dafbe1", "yellow": "#fff8c5", "red": "#ffebe9", "not_enough_data": "#eaeef2", "unknown": "#eaeef2"}
QUESTIONS = {
    "data_broken": "Is the data broken?",
    "model_hurt": "Is the model hurt?",
    "world_moved": "Has the world moved?",
}
# What each signal measures, in words a person on call reads first; the exact message follows.
SIGNAL_WORDS = {
    "psi": "its distribution moved away from the training profile (PSI, bias-corrected)",
    "unit_change": "its values look converted to another unit",
    "missing_rate_increase": "more of it is missing than in training",
    "unseen_category_rate": "it carries categories the training data never had",
    "stuck_value_share": "one value repeats far more than in training (a stuck source?)",
    "beyond_reference_rate": "its values fall outside the range seen in training",
    "contract_violation_rate": "requests were rejected at the door for this field",
    "skew_mismatch_rate": "served features differ from the same features recomputed offline (training-serving skew)",
    "roc_auc_drop": "the realised ROC AUC on labelled rows fell below validation",
    "expected_roc_auc_drop": "the ROC AUC estimated without labels fell below validation",
    "label_rate_shift": "the share of late flights changed",
    "model_age_days": "the model is old",
    "drifted_feature_share": "a large share of the columns drifted",
    "weighted_drift_score": "drift weighted by what the model relies on is high",
}
ACTIONS = {
    "promoted": "promoted by the gate",
    "refused": "refused by the gate",
    "forced": "forced promotion (gate skipped)",
    "rollback": "rolled back",
    "failed": "retrain failed",
    "cooldown": "retrain deferred (cooldown)",
}


@dataclass(frozen=True)
class PageData:
    """Everything the page shows, read by the route (runs newest first)."""

    runs: Sequence[Mapping[str, Any]]
    policy: PolicySettings
    events: Sequence[Mapping[str, Any]] = ()
    versions: Sequence[Any] = ()  # core.registry.ModelVersion
    fallback_spans: Sequence[Mapping[str, Any]] = ()
    serving: str = ""
    model_name: str = ""
    timezone: str = "UTC"
    report_urls: Mapping[str, str | None] = field(default_factory=dict)  # file path -> URL (None: pruned)
    problems: Sequence[str] = ()  # what could not be read (a store down), said on the page
    fleet: FleetFigures | None = None  # the latest fleet run, when a fleet is configured
    fleet_configured: bool = False


# -- small helpers ---------------------------------------------------------------------------------
def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, int | float):
        return f"{v:.{digits}g}"
    return escape(str(v))


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _word(status: str) -> str:
    return status.upper().replace("_", " ")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def window_label(run: Mapping[str, Any], tz: str) -> str:
    """A run's window in words: local days when both bounds are local midnights, else UTC times."""
    lo, hi = run.get("window_start"), run.get("window_end")
    if lo is None or hi is None:
        return "the whole log"
    utc, zone = ZoneInfo("UTC"), ZoneInfo(tz)
    llo, lhi = lo.replace(tzinfo=utc).astimezone(zone), hi.replace(tzinfo=utc).astimezone(zone)
    if (llo.hour, llo.minute, lhi.hour, lhi.minute) == (0, 0, 0, 0):
        last = (lhi - timedelta(days=1)).date()
        return f"{llo.date()}" if last == llo.date() else f"{llo.date()} – {last}"
    return f"{lo:%Y-%m-%d %H:%M} – {hi:%H:%M} UTC" if lo.date() == hi.date() else f"{lo:%Y-%m-%d %H:%M} – {hi:%Y-%m-%d %H:%M} UTC"


def short_label(run: Mapping[str, Any], tz: str) -> str:
    lo, hi = run.get("window_start"), run.get("window_end")
    if lo is None or hi is None:
        return "all"
    zone = ZoneInfo(tz)
    llo = lo.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
    lhi = (hi.replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)) - timedelta(seconds=1)
    if (llo.hour, llo.minute) == (0, 0):
        return f"{llo:%b %d}" if llo.date() == lhi.date() else f"{llo:%b %d}–{lhi:%b %d}"
    return f"{lo:%H:%M}"


def rule_for(policy: PolicySettings, signal: str, feature: str | None) -> Rule | None:
    """The policy rule that judges this (signal, feature): the first that matches, as the policy does."""
    s = Signal(signal, feature, 0.0)
    return next((r for r in policy.rules if r.matches(s)), None)


# The policy's message names the threshold the value crossed ("... > critical threshold 5 (...)").
CROSSED = re.compile(r"[<>] (critical|warning) threshold")


def plain_reason(r: Mapping[str, Any], policy: PolicySettings) -> str:
    """One reason in plain language: what moved, by how much, against which threshold.

    A moved world alone is held at warning (`monitoring.policy.cap_world_moved`) but keeps the
    critical threshold it crossed: the sentence names that threshold and says it was held."""
    signal, feat = str(r.get("signal", "")), r.get("feature")
    rule = rule_for(policy, signal, feat)
    words = SIGNAL_WORDS.get(signal, signal.replace("_", " "))
    side = "below" if rule is not None and rule.direction == "below" else "above"
    who = f"{feat}: " if feat else ""
    severity = str(r.get("severity", ""))
    m = CROSSED.search(str(r.get("message", "")))
    crossed = m.group(1) if m else severity
    held = ""
    if crossed != severity:
        why = ": the world moved, no evidence of harm" if r.get("question") == "world_moved" else ""
        held = f" (held at {severity}{why})"
    return f"{who}{words} — {signal} {_num(r.get('value'))}, {side} the {crossed} threshold {_num(r.get('threshold'))}{held}"


def signals_of(run: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((run.get("summary") or {}).get("signals") or [])


def signal_value(run: Mapping[str, Any], signal: str, feature: str | None) -> float | None:
    for s in signals_of(run):
        if s.get("signal") == signal and s.get("feature") == feature and _finite(s.get("value")):
            return float(s["value"])
    return None


def severity_of(run: Mapping[str, Any], signal: str, feature: str | None) -> str | None:
    for r in run.get("reasons") or []:
        if r.get("signal") == signal and r.get("feature") == feature:
            return str(r.get("severity"))
    return None


# -- SVG -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    """A y axis from `lo` to `hi`; compressed (log10(1 + v/k)) when values run far past the
    thresholds (PSI 16 against a critical 1), so the bands stay readable."""

    lo: float
    hi: float
    k: float = 0.0  # > 0: compressed

    def t(self, v: float) -> float:
        return math.copysign(math.log10(1 + abs(v) / self.k), v) if self.k else v

    def frac(self, v: float) -> float:
        """0 at `lo`, 1 at `hi`."""
        return (self.t(v) - self.t(self.lo)) / ((self.t(self.hi) - self.t(self.lo)) or 1.0)

    def ticks(self, rule: Rule | None) -> list[float]:
        marks = [m for m in ((rule.warning, rule.critical) if rule else ()) if m is not None and self.lo <= m <= self.hi]
        return sorted({self.lo, self.hi, *marks} if marks else {self.lo, (self.lo + self.hi) / 2, self.hi})


def _scale(values: Iterable[float], rule: Rule | None) -> Axis:
    vals = [v for v in values if _finite(v)]
    marks = [t for t in ((rule.warning, rule.critical) if rule else ()) if t is not None]
    lo = min([0.0, *vals, *marks])
    hi = max([*vals, *[m * 1.25 for m in marks], lo + 1e-9])
    if hi - lo < 1e-9:
        hi = lo + 1.0
    top_mark = max((abs(m) for m in marks), default=0.0)
    k = min((abs(m) for m in marks if m), default=0.0) if top_mark and max(map(abs, vals), default=0) > 6 * top_mark else 0.0
    return Axis(lo, hi, k)


def _bands(rule: Rule | None, y: Any, x0: float, x1: float, ax: Axis) -> str:
    """Shaded threshold bands: green below the warning, yellow to the critical, red beyond."""
    lo, hi = ax.lo, ax.hi
    if rule is None or (rule.warning is None and rule.critical is None):
        return ""
    w = rule.warning if rule.warning is not None else rule.critical
    c = rule.critical if rule.critical is not None else hi if rule.direction == "above" else lo
    assert w is not None and c is not None
    if rule.direction == "above":
        zones = [(lo, w, "green"), (w, c, "yellow"), (c, hi, "red")]
    else:
        zones = [(w, hi, "green"), (c, w, "yellow"), (lo, c, "red")]
    out = []
    for a, b, colour in zones:
        a, b = max(lo, min(a, hi)), max(lo, min(b, hi))
        if b > a:
            out.append(
                f'<rect x="{x0:.1f}" y="{y(b):.1f}" width="{x1 - x0:.1f}" height="{y(a) - y(b):.1f}" '
                f'fill="{FILL[colour]}" class="band band-{colour}"/>'
            )
    for t, colour in ((rule.warning, "yellow"), (rule.critical, "red")):
        if t is not None and lo <= t <= hi:
            out.append(
                f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="{COLOURS[colour]}" '
                f'stroke-dasharray="4 3" stroke-width="1"><title>{colour} threshold {t:g}</title></line>'
            )
    return "".join(out)


def sparkline(values: Sequence[float | None], rule: Rule | None, width: int = 140, height: int = 28) -> str:
    """A tiny line of `values` (oldest first) over the thresholds; None leaves a gap."""
    ax = _scale([v for v in values if v is not None], rule)
    n = max(len(values), 2)

    def x(i: int) -> float:
        return 2 + i * (width - 4) / (n - 1)

    def y(v: float) -> float:
        return height - 2 - ax.frac(v) * (height - 4)

    pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values) if v is not None)
    last = next(((i, v) for i, v in reversed(list(enumerate(values))) if v is not None), None)
    dot = f'<circle cx="{x(last[0]):.1f}" cy="{y(last[1]):.1f}" r="2.5" fill="#1f2328"/>' if last else ""
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="trend over {len(values)} runs">{_bands(rule, y, 0, width, ax)}'
        f'<polyline points="{pts}" fill="none" stroke="#1f2328" stroke-width="1.5"/>{dot}</svg>'
    )


def chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None], str]],
    rule: Rule | None = None,
    *,
    width: int = 540,
    height: int = 190,
    thresholds: Sequence[tuple[str, Sequence[float | None], str]] = (),
) -> str:
    """A line chart over runs (oldest first) with threshold bands, like NannyML's chunk plots.

    `series` = (name, values, colour); `thresholds` = per-run threshold lines (name, values, colour)
    for thresholds that move with the model (AUC floors)."""
    left, right, top, bottom = 48, 12, 22, 34
    allv = [v for _, vs, _ in (*series, *thresholds) for v in vs if v is not None]
    if rule is not None:
        ax = _scale(allv, rule)
    else:  # no bands to show: zoom on the values (never below 0 for a quantity that is not)
        lo, hi = min(allv, default=0.0), max(allv, default=1.0)
        pad = max((hi - lo) * 0.15, 0.01)
        ax = Axis(max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad)
    n = max(len(labels), 2)
    x0, x1 = float(left), float(width - right)

    def x(i: int) -> float:
        return x0 + (i + 0.5) * (x1 - x0) / n

    def y(v: float) -> float:
        return top + (1 - ax.frac(v)) * (height - top - bottom)

    parts = [
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}"><text x="{left}" y="14" class="ct">{escape(title)}'
        + ("" if rule is not None or thresholds else " (not judged by the policy)")
        + "</text>",
        _bands(rule, y, x0, x1, ax),
        f'<line x1="{x0}" x2="{x0}" y1="{top}" y2="{height - bottom}" stroke="#8c959f"/>',
    ]
    for t in ax.ticks(rule):
        parts.append(f'<text x="{left - 4}" y="{y(t) + 4:.1f}" class="ax" text-anchor="end">{t:.3g}</text>')
    if ax.k:
        parts.append(f'<text x="{x1:.0f}" y="14" class="ax" text-anchor="end">compressed scale</text>')
    step = max(1, len(labels) // 8)
    for i, lab in enumerate(labels):
        if i % step == 0 or i == len(labels) - 1:
            parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 14}" class="ax" text-anchor="middle">{escape(lab)}</text>')
    for name, values, colour in thresholds:
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values) if v is not None)
        parts.append(
            f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-dasharray="4 3">'
            f"<title>{escape(name)}</title></polyline>"
        )
    for k, (name, values, colour) in enumerate(series):
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values) if v is not None)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for i, v in enumerate(values):
            if v is not None:
                parts.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" fill="{colour}">'
                    f"<title>{escape(labels[i])}: {escape(name)} {v:.4g}</title></circle>"
                )
        lx = x0 + 8 + k * 170
        parts.append(
            f'<rect x="{lx:.0f}" y="{height - 12}" width="10" height="3" fill="{colour}"/>'
            f'<text x="{lx + 14:.0f}" y="{height - 8}" class="ax">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# -- sections --------------------------------------------------------------------------------------
def light_section(latest: Mapping[str, Any] | None, d: PageData) -> str:
    if latest is None:
        return (
            '<section id="light" class="light" data-status="unknown" style="--c:#57606a;--f:#eaeef2">'
            '<div class="dot"></div><div><h1 class="word">UNKNOWN</h1>'
            "<p>No monitor run yet: run <code>driftlight monitor --from … --to …</code>.</p></div></section>"
        )
    st = str(latest["status"])
    reasons = list(latest.get("reasons") or [])
    questions: list[str] = []
    for r in reasons:
        q = r.get("question")
        if q and q not in questions:
            questions.append(str(q))
    held = ""
    if latest.get("raw_status") and latest["raw_status"] != st:
        held = (
            f'<p class="held">Held {escape(_word(st))} by hysteresis: this window on its own is '
            f"{escape(_word(str(latest['raw_status'])))}; the light clears after "
            f"{d.policy.clear_after} calmer windows.</p>"
        )
    qhtml = ""
    if questions:
        qhtml = (
            '<p class="questions">Question that fired: '
            + ", ".join(f'<span class="q" data-question="{escape(q)}">{escape(QUESTIONS.get(q, q))}</span>' for q in questions)
            + "</p>"
        )
    drill = ' <span class="badge drill">DRILL</span>' if is_drill(latest) else ""
    items = "".join(
        f'<li class="reason sev-{escape(str(r.get("severity")))}" data-signal="{escape(str(r.get("signal")))}" '
        f'data-feature="{escape(str(r.get("feature") or ""))}"'
        + (f' data-question="{escape(str(r["question"]))}"' if r.get("question") else "")
        + f'><span class="sev">{escape(str(r.get("severity")))}</span> {escape(plain_reason(r, d.policy))}'
        f'<div class="msg">{escape(str(r.get("message", "")))}</div></li>'
        for r in reasons
    )
    perf = (latest.get("summary") or {}).get("performance") or {}
    return (
        f'<section id="light" class="light" data-status="{escape(st)}" style="--c:{COLOURS.get(st, "#57606a")};'
        f'--f:{FILL.get(st, "#eaeef2")}"><div class="dot" aria-hidden="true"></div><div class="what">'
        f'<h1 class="word">{escape(_word(st))}{drill}</h1>'
        f'<p class="meta">{escape(d.model_name)} v{escape(str(latest.get("model_version")))} · window '
        f"{escape(window_label(latest, d.timezone))} (by {escape(str(latest.get('window_by')))}) · "
        f"{latest.get('rows')} rows, {latest.get('labelled')} labelled · realised ROC AUC {_num(perf.get('roc_auc'))}, "
        f"estimated {_num(perf.get('expected_roc_auc'))} · judged {latest['finished_at']:%Y-%m-%d %H:%M:%S} UTC</p>"
        f"{qhtml}{held}"
        + (f'<ol id="reasons" class="reasons">{items}</ol>' if items else '<p id="reasons">No threshold breached.</p>')
        + "</div></section>"
    )


def fields_section(runs_old_first: Sequence[Mapping[str, Any]], d: PageData) -> str:
    """Every monitored field of the latest run: its statistic, thresholds and trend; a click opens
    its charts (a <details>: no JavaScript)."""
    if not runs_old_first:
        return ""
    latest = runs_old_first[-1]
    labels = [short_label(r, d.timezone) for r in runs_old_first]
    by_field: dict[str, list[str]] = {}
    for s in signals_of(latest):
        f = s.get("feature")
        if f and s.get("signal") not in by_field.setdefault(f, []):
            by_field[f].append(str(s.get("signal")))
    rank = {"critical": 0, "warning": 1}

    def order(f: str) -> tuple[int, float, str]:
        sev = min((rank.get(str(severity_of(latest, s, f)), 2) for s in by_field[f]), default=2)
        return (sev, -(signal_value(latest, "psi", f) or 0.0), f)

    rows = []
    for f in sorted(by_field, key=order):
        sigs = by_field[f]
        main = "psi" if "psi" in sigs else sigs[0]
        rule = rule_for(d.policy, main, f)
        sevs = [severity_of(latest, s, f) for s in sigs]
        state = "critical" if "critical" in sevs else "warning" if "warning" in sevs else "ok"
        trend = [signal_value(r, main, f) for r in runs_old_first]
        others = ", ".join(
            f"{escape(s)} {_num(signal_value(latest, s, f))}"
            + (f" ({severity_of(latest, s, f)})" if severity_of(latest, s, f) else "")
            for s in sigs
            if s != main
        )
        thr = (
            f"{_num(rule.warning)} / {_num(rule.critical)}" + (" (below)" if rule.direction == "below" else "")
            if rule
            else "not judged"
        )
        charts = "".join(
            chart(
                f"{s} of {f}",
                labels,
                [(s, [signal_value(r, s, f) for r in runs_old_first], "#0969da")],
                rule_for(d.policy, s, f),
            )
            for s in sigs
        )
        why = f'<p class="why">Why these thresholds: {escape(rule.why)}</p>' if rule and rule.why else ""
        rows.append(
            f'<details class="field state-{state}" id="field-{slug(f)}" data-field="{escape(f)}">'
            f'<summary><span class="fname">{escape(f)}</span><span class="stat">{escape(main)} '
            f'{_num(signal_value(latest, main, f))}</span><span class="thr">{thr}</span>'
            f'<span class="state">{state}</span><span class="trend">{sparkline(trend, rule)}</span>'
            f'<span class="others">{others}</span></summary><div class="charts">{charts}{why}</div></details>'
        )
    return (
        '<section id="fields"><h2>Every monitored field</h2><p class="hint">The statistic of the latest window, '
        "its warning / critical thresholds from the policy, and its trend over the last "
        f"{len(runs_old_first)} runs (oldest left). Click a field for its charts.</p>"
        '<div class="fhead"><span>field</span><span>statistic</span><span>warning / critical</span>'
        "<span>state</span><span>trend</span><span>other signals</span></div>" + "".join(rows) + "</section>"
    )


def signals_section(runs_old_first: Sequence[Mapping[str, Any]], d: PageData) -> str:
    """Window-wide signals over time with their bands, and realised vs estimated ROC AUC."""
    if not runs_old_first:
        return ""
    labels = [short_label(r, d.timezone) for r in runs_old_first]
    names: list[str] = []
    for r in runs_old_first:
        for s in signals_of(r):
            if not s.get("feature") and s.get("signal") not in names:
                names.append(str(s.get("signal")))
    perf = [(r.get("summary") or {}).get("performance") or {} for r in runs_old_first]
    real = [float(p["roc_auc"]) if _finite(p.get("roc_auc")) else None for p in perf]
    est = [float(p["expected_roc_auc"]) if _finite(p.get("expected_roc_auc")) else None for p in perf]
    # The validation AUC each run was judged against: realised + its drop (or estimated + its drop).
    val: list[float | None] = []
    for r, a, e in zip(runs_old_first, real, est, strict=True):
        drop, edrop = signal_value(r, "roc_auc_drop", None), signal_value(r, "expected_roc_auc_drop", None)
        val.append(a + drop if a is not None and drop is not None else e + edrop if e is not None and edrop is not None else None)
    rule = rule_for(d.policy, "roc_auc_drop", None)
    floors = []
    if rule is not None:
        for name, t, colour in (
            ("warning floor", rule.warning, COLOURS["yellow"]),
            ("critical floor", rule.critical, COLOURS["red"]),
        ):
            if t is not None:
                floors.append((f"{name}: validation − {t:g}", [v - t if v is not None else None for v in val], colour))
    auc = chart(
        "ROC AUC: realised (labelled rows) vs estimated (no labels)",
        labels,
        [("realised", real, "#0969da"), ("estimated", est, "#8250df"), ("validation", val, "#57606a")],
        thresholds=floors,
    )
    charts = "".join(
        chart(s, labels, [(s, [signal_value(r, s, None) for r in runs_old_first], "#0969da")], rule_for(d.policy, s, None))
        for s in names
    )
    return f'<section id="signals"><h2>Over time</h2><div class="grid">{auc}{charts}</div></section>'


def history_section(d: PageData) -> str:
    vers = "".join(
        f"<tr><td>v{escape(str(v.version))}</td><td>{escape(', '.join(v.aliases) or '–')}</td>"
        f"<td>{escape(str(v.tags.get('role', 'trained')))}</td><td>{escape(str(v.tags.get('gate_decision', '–')))}</td></tr>"
        for v in d.versions
    )
    events = []
    for e in d.events:
        ev = e.get("evidence") or {}
        evidence = (
            "<details><summary>the gate's evidence</summary>"
            f"<pre>{escape(json.dumps(ev, indent=1, default=str)[:6000])}</pre></details>"
            if ev
            else ""
        )
        reasons = "".join(f"<li>{escape(str(x))}</li>" for x in e.get("reasons") or [])
        act = str(e.get("action"))
        events.append(
            f'<tr class="event ev-{escape(act)}" data-action="{escape(act)}"><td>{e["at"]:%Y-%m-%d %H:%M}</td>'
            f"<td><b>{escape(ACTIONS.get(act, act))}</b></td>"
            f"<td>v{escape(str(e.get('from_version')))} → v{escape(str(e.get('to_version')))}</td>"
            f"<td><ul>{reasons}</ul>{evidence}</td></tr>"
        )
    spans = "".join(
        f"<li>{s['start']:%Y-%m-%d %H:%M:%S} – {s['end']:%Y-%m-%d %H:%M:%S} UTC: {s['rows']} predictions by the fallback</li>"
        for s in d.fallback_spans
    )
    return (
        '<section id="history"><h2>Model history</h2>'
        f'<p>Serving now: <b id="serving">{escape(d.serving or "unknown")}</b></p>'
        + (
            '<table class="t" id="versions"><thead><tr><th>version</th><th>aliases</th><th>role</th><th>gate</th></tr></thead>'
            f"<tbody>{vers}</tbody></table>"
            if vers
            else "<p>No registered versions could be read.</p>"
        )
        + "<h3>Promotions, refusals, rollbacks</h3>"
        + (
            f'<table class="t" id="events"><thead><tr><th>at</th><th>what</th><th>from → to</th><th>reasons</th></tr></thead>'
            f"<tbody>{''.join(events)}</tbody></table>"
            if events
            else '<p id="events">No promotion, refusal or rollback yet.</p>'
        )
        + "<h3>Fallback periods (last 30 days of serving)</h3>"
        + (f'<ul id="fallback">{spans}</ul>' if spans else '<p id="fallback">The fallback has not served.</p>')
        + "</section>"
    )


def report_links(run: Mapping[str, Any], d: PageData) -> str:
    out = []
    for kind, path in sorted(((run.get("summary") or {}).get("reports") or {}).items()):
        url = d.report_urls.get(str(path))
        if url:
            out.append(f'<a href="{escape(url)}" class="report">{escape(kind)}</a>')
        else:
            out.append(f'<span class="gone" title="removed by the retention setting">{escape(kind)} (removed)</span>')
    return " ".join(out) or "–"


def runs_section(runs_newest_first: Sequence[Mapping[str, Any]], d: PageData) -> str:
    rows = []
    for r in runs_newest_first:
        st = str(r["status"])
        top = (r.get("reasons") or [{}])[0].get("message", "") if r.get("reasons") else ""
        kind = '<span class="badge drill">drill</span>' if is_drill(r) else "real"
        rows.append(
            f'<tr class="run" data-status="{escape(st)}"><td>{r["finished_at"]:%Y-%m-%d %H:%M:%S}</td>'
            f"<td>{escape(window_label(r, d.timezone))}</td><td>v{escape(str(r.get('model_version')))}</td>"
            f"<td>{r.get('rows')}</td>"
            f'<td><span class="pill" style="background:{COLOURS.get(st, "#57606a")}">{escape(_word(st))}</span></td>'
            f"<td>{escape(top) or '–'}</td><td>{kind}</td><td>{report_links(r, d)}</td></tr>"
        )
    return (
        '<section id="runs"><h2>Runs</h2><table class="t"><thead><tr><th>judged (UTC)</th><th>window</th><th>model</th>'
        "<th>rows</th><th>light</th><th>top reason</th><th>drill or real</th><th>reports</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _shadow_line(sh: Any) -> str:
    """The model's champion-vs-challenger comparison (monitoring.shadow.describe), if it has one."""
    if not isinstance(sh, Mapping) or not sh:
        return ""
    from monitoring.shadow import describe

    try:
        text = describe(sh)
    except (KeyError, TypeError, ValueError):  # a run recorded by other code: show nothing rather than fail
        return ""
    return f'<div class="msg shadow">{escape(text)}</div>'


def fleet_section(d: PageData, now: datetime | None = None) -> str:
    """The fleet's latest run: counts by colour, every judged model worst first (colour, reasons,
    traffic, impact), the models too small to judge, and how old the run is."""
    if not d.fleet_configured:
        return ""
    f = d.fleet
    if f is None:
        return (
            '<section id="fleet"><h2>Fleet</h2><p id="fleet-none">No fleet run yet: run '
            "<code>driftlight fleet monitor</code>.</p></section>"
        )
    counts = "".join(
        f'<li class="fc" data-colour="{c}" style="--c:{COLOURS[c]};--f:{FILL[c]}"><b>{f.counts.get(c, 0)}</b> '
        f"{escape(_word(c).lower())}</li>"
        for c in COLOUR_ORDER
    )
    rows = []
    for rank, v in enumerate((v for v in f.worst if v.get("status") != "not_enough_data"), start=1):
        st = str(v.get("status"))
        reasons = "".join(
            f'<li class="sev-{escape(str(r.get("severity")))}"><span class="sev">{escape(str(r.get("severity")))}</span> '
            f'{escape(plain_reason(r, d.policy))}<div class="msg">{escape(str(r.get("message", "")))}</div></li>'
            for r in v.get("reasons") or []
        )
        rows.append(
            f'<tr class="fm" data-status="{escape(st)}" data-model="{escape(str(v.get("name")))}"><td>{rank}</td>'
            f'<td><span class="pill" style="background:{COLOURS.get(st, "#57606a")}">{escape(_word(st))}</span></td>'
            f'<td>{escape(str(v.get("segment")))}<div class="msg">{escape(str(v.get("name")))} '
            f"v{escape(str(v.get('version')))}</div>{_shadow_line(v.get('shadow'))}</td>"
            f"<td>{_num(v.get('rows'), 6)} rows / {_num(v.get('days'))} d</td><td>{_num(v.get('labelled'), 6)}</td>"
            f"<td>{_num(v.get('auc_loss'))}</td><td>{_num(v.get('impact'))}</td>"
            f"<td>{f'<ul>{reasons}</ul>' if reasons else '–'}</td></tr>"
        )
    small = "".join(f"<li>{escape(n)}</li>" for n in f.not_enough_data)
    queue = f'retrain queue: <b id="fleet-queue">{f.queue_length}</b> waiting' + (
        " · last cycle: " + ", ".join(f"{escape(k)} {n}" for k, n in sorted(f.decisions.items())) if f.decisions else ""
    )
    return (
        f'<section id="fleet" data-fleet="{escape(f.fleet)}"><h2>Fleet {escape(f.fleet)}</h2>'
        f'<p class="meta" id="fleet-age">judged {f.finished_at:%Y-%m-%d %H:%M:%S} UTC '
        f"(<b>{_age(f.age_s(now))} ago</b>) · window ending {escape(f.day)} · engine {escape(f.engine)}"
        + (f" · {f.rows_read} rows read" if f.rows_read is not None else "")
        + f" · {queue}</p>"
        f'<ul class="fcounts" id="fleet-counts">{counts}</ul>'
        '<p class="hint">Worst first: colour, then impact = window rows × estimated ROC AUC loss '
        "(realised when labels arrived, else the label-free estimate).</p>"
        '<table class="t" id="fleet-models"><thead><tr><th>#</th><th>light</th><th>segment / model</th>'
        "<th>traffic</th><th>labelled</th><th>AUC loss</th><th>impact</th><th>reasons</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        f"<h3>Not enough data ({len(f.not_enough_data)})</h3>"
        + (
            f'<ul class="ned" id="fleet-ned">{small}</ul>'
            if small
            else '<p id="fleet-ned">Every model had enough rows to be judged.</p>'
        )
        + "</section>"
    )


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:baseline}
header a{color:#c9d1d9}main{max-width:1200px;margin:0 auto;padding:16px 24px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px;margin:0 0 16px}
.light{display:flex;gap:20px;border:3px solid var(--c);background:var(--f)}
.dot{width:72px;height:72px;border-radius:50%;background:var(--c);flex:none;box-shadow:0 0 0 6px #fff inset}
.word{margin:0;color:var(--c);font-size:34px;letter-spacing:.04em}.meta{color:#57606a;margin:4px 0}
.questions .q{font-weight:600;margin-right:8px}.held{font-style:italic}
.reasons{margin:8px 0 0;padding-left:22px}.reason{margin:4px 0}.reason .msg{color:#57606a;font-size:12px}
.sev{font-weight:700;text-transform:uppercase;font-size:12px}.sev-critical .sev{color:#cf222e}.sev-warning .sev{color:#9a6700}
.fhead,.field>summary{display:grid;grid-template-columns:200px 190px 100px 70px 150px 1fr;gap:8px;align-items:center}
.fhead{font-weight:600;font-size:13px;border-bottom:1px solid #d0d7de;padding:4px 8px}
.field>summary{cursor:pointer;padding:3px 8px;border-bottom:1px solid #eaeef2;list-style:none}
.field>summary::-webkit-details-marker{display:none}.field>summary:hover{background:#f6f8fa}
.field[open]>summary{background:#ddf4ff}.fname{font-weight:600}.fname::before{content:"▸ ";color:#57606a}
.field[open] .fname::before{content:"▾ "}.others{font-size:12px;color:#57606a}
.state-critical .state{color:#cf222e;font-weight:700}.state-warning .state{color:#9a6700;font-weight:700}
.state-ok .state{color:#1a7f37}.charts{padding:8px 8px 12px 24px;display:flex;flex-wrap:wrap;gap:8px}
.why{flex-basis:100%;font-size:12px;color:#57606a;margin:0}.hint{color:#57606a;font-size:13px;margin-top:0}
.grid{display:flex;flex-wrap:wrap;gap:12px}.ct{font-size:12px;font-weight:600}.ax{font-size:10px;fill:#57606a}
svg{background:#fff}.t{border-collapse:collapse;width:100%;font-size:13px}.t th,.t td{text-align:left;padding:4px 6px;
border-bottom:1px solid #eaeef2;vertical-align:top}.t ul{margin:0;padding-left:16px}
.pill{color:#fff;border-radius:10px;padding:1px 8px;font-size:12px;font-weight:600}
.badge.drill{background:#8250df;color:#fff;border-radius:4px;padding:1px 6px;font-size:12px;vertical-align:middle}
.gone{color:#8c959f}pre{font-size:11px;max-height:300px;overflow:auto;background:#f6f8fa;padding:6px}
.problems{border-color:#cf222e;color:#cf222e}
.fcounts{display:flex;gap:10px;list-style:none;padding:0;margin:8px 0}.fc{border:2px solid var(--c);background:var(--f);
border-radius:8px;padding:6px 14px;color:var(--c)}.fc b{font-size:22px}.fm .msg{color:#57606a;font-size:11px}
.ned{columns:4;font-size:12px;color:#57606a}
"""


def render_page(d: PageData) -> str:
    """The whole page (HTML5, inline CSS and SVG, no script)."""
    # The light, the fields and the charts are the real light's (as /status); drills are listed in
    # the runs table, marked, and never shown as the light.
    real = [r for r in d.runs if not is_drill(r)]
    latest = real[0] if real else None
    old_first = list(reversed(real))
    problems = (
        '<section class="problems"><b>Could not read everything:</b><ul>'
        + "".join(f"<li>{escape(p)}</li>" for p in d.problems)
        + "</ul></section>"
        if d.problems
        else ""
    )
    word = _word(str(latest["status"])) if latest else "UNKNOWN"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>driftlight: {escape(word)} · {escape(d.model_name)}</title>"
        '<link rel="icon" href="data:,"><style>'
        + CSS
        + "</style></head><body><header><b>driftlight</b><span>"
        + escape(d.model_name)
        + '</span><a href="/status">/status</a><a href="/docs">/docs</a><a href="/metrics">/metrics</a></header><main>'
        + problems
        + light_section(latest, d)
        + fleet_section(d)
        + fields_section(old_first, d)
        + signals_section(old_first, d)
        + history_section(d)
        + runs_section(d.runs, d)
        + "</main></body></html>"
    )


def report_url_map(runs: Iterable[Mapping[str, Any]], reports_dir: Path) -> dict[str, str | None]:
    """Each report path a run names -> its URL under /reports/, or None when the file is gone or
    lies outside the reports folder (never a file-system path on the page)."""
    base = reports_dir.resolve()
    out: dict[str, str | None] = {}
    for r in runs:
        for path in ((r.get("summary") or {}).get("reports") or {}).values():
            p = Path(str(path))
            ok = p.resolve().parent == base and p.is_file()
            out[str(path)] = f"/reports/{p.name}" if ok else None
    return out
