"""Turn a results file into Markdown tables (with ratios to each baseline) and an SVG plot.

Plain string building on purpose: no plotting dependency for two small charts.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from .generators import describe

__all__ = ["markdown", "summary", "svg"]

Record = dict[str, Any]


def _records(result: dict[str, Any], scenario: str) -> list[Record]:
    """The scenario's records; in a run with more than one load generator each is shown as ``target [generator]``
    (its ``target`` for the tables, ``plain_target`` the server's name), so no figure is read without its generator."""
    records = [r for r in result["records"] if r["scenario"] == scenario]
    if len({generator_of(r) for r in result["records"]}) < 2:
        return records
    return [{**r, "target": f"{r['target']} [{generator_of(r)}]", "plain_target": r["target"]} for r in records]


def _by_generator(records: list[Record]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per generator, per server: the fan-out summary (ratios compare servers measured by one generator)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        if r.get("steps"):
            out.setdefault(generator_of(r), {})[str(r.get("plain_target", r["target"]))] = summary(r)
    return out


def summary(record: Record) -> dict[str, Any]:
    """The headline figures of one fan-out record."""
    steps = [s for s in record.get("steps", []) if "rate" in s]
    passing = [s for s in steps if s["sustainable"]]
    by_rate = {s["rate"]: s for s in steps}
    last = passing[-1] if passing else None
    return {
        "max_rate": last["rate"] if last else 0,
        "peak_frames": max((s["delivered_per_s"] for s in steps), default=0),
        "cpu_at_1000": by_rate[1000]["server_cpu"] if 1000 in by_rate else None,
        "gen_cpu_last": last["gen_cpu"] if last else None,
        "by_rate": by_rate,
        "failed_at": next((s["rate"] for s in steps if not s["sustainable"]), None),
    }


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if value >= 10**9:
            return "∞"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "—"


def generator_of(record: Record) -> str:
    """The load generator that produced a record (runs before there was a choice were all Python's)."""
    return str(record.get("generator", "python"))


def _fanout_table(records: list[Record], baseline_names: list[str], title_rates: list[int]) -> list[str]:
    out = [
        "| target | max sustainable msgs/s | peak delivered frames/s | server CPU % @1000 | "
        + " | ".join(f"e2e p50/p99 ms @{r}" for r in title_rates)
        + " | ack p50/p99 ms @1000 | first failing step | load generator, its CPU % at the max |",
        "|---|---|---|---|" + "---|" * len(title_rates) + "---|---|---|",
    ]
    for r in records:
        if r.get("error") and not r.get("steps"):
            out.append(f"| {r['target']} | error: {r['error']} |" + " |" * (5 + len(title_rates)))
            continue
        s = summary(r)
        cells = []
        for rate in title_rates:
            step = s["by_rate"].get(rate)
            cells.append(f"{_fmt(step['e2e_ms']['p50'], 2)} / {_fmt(step['e2e_ms']['p99'], 1)}" if step else "—")
        at = s["by_rate"].get(1000)
        ack = f"{_fmt(at['ack_ms']['p50'], 2)} / {_fmt(at['ack_ms']['p99'], 1)}" if at and at["acks"] else "—"
        out.append(
            f"| {r['target']} | {_fmt(s['max_rate'])} | {_fmt(s['peak_frames'])} | {_fmt(s['cpu_at_1000'])} | "
            + " | ".join(cells)
            + f" | {ack} | {_fmt(s['failed_at'])} | {generator_of(r)} {_fmt(s['gen_cpu_last'])} |"
        )
    return out


def _steps_table(record: Record) -> list[str]:
    out = [
        f"**{record['target']}** ({record.get('note', '')}); load generator: {generator_of(record)}",
        "",
        "| offered msgs/s | delivered frames/s | e2e p50 | e2e p99 | e2e p999 | ack p50 | ack p99 | ack p999 |"
        " missing | dropped | server CPU % | generator CPU % | sustainable |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in record.get("steps", []):
        e, a = s["e2e_ms"], s["ack_ms"]
        out.append(
            f"| {s['rate']:,} | {s['delivered_per_s']:,} | {_fmt(e['p50'], 2)} | {_fmt(e['p99'])} | {_fmt(e['p999'])} "
            f"| {_fmt(a['p50'], 2)} | {_fmt(a['p99'])} | {_fmt(a['p999'])} | {s['lost']} | {s['dropped']} "
            f"| {s['server_cpu']} | {s['gen_cpu']} | {'yes' if s['sustainable'] else 'no'} |"
        )
    if record.get("error"):
        out.append(f"\nerror: {record['error']}")
    return [*out, ""]


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Run {result['started']} → {result.get('finished', '(unfinished)')}, command `{result['command']}`"
        + (" (quick smoke run: sizes too small to mean anything)" if result.get("quick") else ""),
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Python {m['python']}, {m['platform']}; "
        f"pinning: {m['pinning']}.",
        "",
        f"Load generator: {'; '.join(describe(g) for g in str(result.get('generator', 'python')).split(','))}; "
        "every figure below is as its generator measured it (its own CPU share: *generator CPU %* in the step "
        "tables; with two generators, each row says which as `target [generator]`).",
        "",
    ]
    fanout = _records(result, "fanout")
    if fanout:
        plan = result["plan"]["fanout"]
        lines += [
            f"### Fan-out: {plan['rooms']} rooms x {plan['members']} members, {plan['size']}-byte messages, "
            f"{plan['duration_s']:g} s per offered rate",
            "",
            "A step is sustainable when ≥ 95 % of the offered frames arrive within the step, none is missing "
            f"after the drain (up to {plan.get('drain_s', 10.0):g} s more), no connection drops and the end-to-end "
            f"p99 is under {plan['p99_ms']:g} ms (a frame still missing counts as infinitely late). The ladder "
            "stops at the first failing step. Latencies in ms; *missing* = frames not received by the end of "
            "the drain (an overloaded server still delivering, not a loss: Roost's clients would repair from "
            "the store).",
            "",
        ]
        lines += _fanout_table(fanout, [], [100, 1000, 3000])
        lines += ["", _ratios(fanout), ""]
        if result.get("rounds", 1) > 1:
            lines += _cost_table(fanout)
        lines += ["#### Every step", ""]
        for r in fanout:
            lines += _steps_table(r)
    scale = _records(result, "scale")
    if scale:
        lines += [
            "### Scale: the same fan-out over Redis and NATS, 1 and 2 Roost nodes (2 processes, or --workers 2)",
            "",
        ]
        lines += _fanout_table(scale, [], [100, 1000, 3000])
        lines += ["", _scale_ratios(scale), ""]
        for r in scale:
            lines += _steps_table(r)
    wire = _records(result, "wire")
    if wire:
        lines += _wire_table(result["plan"]["wire"], wire)
    idle = _records(result, "idle")
    if idle:
        lines += [
            "### Idle connections",
            "",
            "| target | connections | connect + authenticate all, s | handshakes/s | then join + follow, s |"
            " server RSS per connection, KB | liveness frames | dropped |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in idle:
            if not r.get("steps"):
                lines.append(f"| {r['target']} | error: {r.get('error')} | | | | | | |")
                continue
            s = r["steps"][-1]
            per = (r["rss_after"] - r["rss_before"]) / max(1, s["connections"]) / 1024
            lines.append(
                f"| {r['target']} | {s['connections']:,} | {s['connect_seconds']} | {s['handshakes_per_s']:,} | "
                f"{s['join_follow_seconds']} | {per:.1f} | {s['liveness'][0]}/{s['liveness'][1]} | {s['dropped']} |"
            )
        lines.append("")
    storm = _records(result, "storm")
    if storm:
        lines += [
            "### Catch-up storm",
            "",
            "| target | clients | messages behind each | all caught up, s | p50 s | p99 s | complete | frames |"
            " messages written while away (s) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in storm:
            if not r.get("steps"):
                lines.append(f"| {r['target']} | error: {r.get('error')} | | | | | | | |")
                continue
            s = r["steps"][-1]
            w = r.get("written", {})
            lines.append(
                f"| {r['target']} | {s['clients']:,} | {s['behind']} | {s['seconds_all_caught_up']} | {s['p50_s']} | "
                f"{s['p99_s']} | {s['complete']:,}/{s['clients']:,} | {s['messages_delivered']:,} | "
                f"{w.get('messages', 0):,} ({w.get('seconds', '—')}) |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def cpu_per_frame(step: dict[str, Any]) -> float | None:
    """Server CPU microseconds per delivered frame in one step.

    On a CPU-bound server the ceiling is the inverse of this, so a before/after ratio of it is the
    ceiling's ratio, measured at every rate instead of only at the one step where the ladder breaks
    (which moves by a whole step on this machine's noise)."""
    if not step.get("delivered_per_s") or step.get("server_cpu") is None:
        return None
    return float(step["server_cpu"]) / 100 / float(step["delivered_per_s"]) * 1e6


def _cost_table(records: list[Record]) -> list[str]:
    """Median CPU per frame over the rounds, per target and rate, and each target's cost over the baseline."""
    per: dict[str, dict[int, list[float]]] = {}
    bases: dict[str, str] = {}
    """label → the label of the baseline measured by the same generator"""
    for r in records:
        baseline = "roost-baseline" if "plain_target" not in r else f"roost-baseline [{generator_of(r)}]"
        bases[r["target"]] = baseline
        for step in r.get("steps", []):
            value = cpu_per_frame(step)
            if value is not None:
                per.setdefault(r["target"], {}).setdefault(step["rate"], []).append(value)
    rates = sorted({rate for by_rate in per.values() for rate in by_rate})
    out = [
        "#### Server CPU per delivered frame, µs: median over the rounds (min-max)",
        "",
        "| target | " + " | ".join(f"@{rate:,}" for rate in rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    for target, by_rate in per.items():
        base = per.get(bases[target])
        cells = []
        for rate in rates:
            values = by_rate.get(rate, [])
            if not values:
                cells.append("—")
                continue
            median = statistics.median(values)
            cell = f"{median:.2f} ({min(values):.2f}-{max(values):.2f}, n={len(values)})"
            if base and base.get(rate) and target != bases[target]:
                cell += f", {(median / statistics.median(base[rate]) - 1) * 100:+.1f} %"
            cells.append(cell)
        out.append(f"| {target} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _ratios(records: list[Record]) -> str:
    groups = _by_generator(records)
    lines = []
    for generator, by in groups.items():
        if "roost" not in by:
            continue
        roost = by["roost"]["max_rate"]
        parts = [f"{name} {_ratio(roost, s['max_rate'])}" for name, s in by.items() if name != "roost"]
        whose = f" (load generator {generator})" if len(groups) > 1 else ""
        lines.append(f"Roost's max sustainable rate as a ratio of each{whose}: " + ", ".join(parts) + ".")
    return " ".join(lines)


def _scale_ratios(records: list[Record]) -> str:
    groups = _by_generator(records)
    lines = []
    for generator, by in groups.items():
        parts = []
        for engine in ("redis", "nats"):
            one = by.get(f"roost-{engine}")
            for suffix, what in (("x2", "2 processes"), ("w2", "--workers 2")):
                two = by.get(f"roost-{engine}-{suffix}")
                if one and two:
                    parts.append(f"{engine}: {what} / 1 = {_ratio(two['max_rate'], one['max_rate'])}")
        if parts:
            whose = f" (load generator {generator})" if len(groups) > 1 else ""
            lines.append(f"Scale-out{whose}: " + ", ".join(parts) + ".")
    return " ".join(lines)


# ---- SVG ----------------------------------------------------------------------------------------

_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666", "#1f78b4"]


def svg(result: dict[str, Any]) -> str:
    """Two panels per fan-out-like scenario: delivered frames/s and end-to-end p99, per offered rate."""
    panels = [(sc, _records(result, sc)) for sc in ("fanout", "scale") if _records(result, sc)]
    width, panel_h = 980, 300
    height = 40 + len(panels) * (panel_h + 60)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="22" font-size="15">roost bench {result["started"]}: per offered rate (msgs/s, log)</text>',
    ]
    y0 = 40
    for scenario, records in panels:
        series = [(r["target"], [s for s in r.get("steps", []) if "rate" in s]) for r in records]
        parts += _panel(
            10, y0, 460, panel_h, f"{scenario}: delivered frames/s", series, lambda s: s["delivered_per_s"], False
        )
        parts += _panel(
            500, y0, 460, panel_h, f"{scenario}: end-to-end p99 ms (log)", series, lambda s: s["e2e_ms"]["p99"], True
        )
        y0 += panel_h + 60
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _panel(
    x: int, y: int, w: int, h: int, title: str, series: list[tuple[str, list[Record]]], value: Any, log_y: bool
) -> list[str]:
    left, bottom, top = 60, 40, 20
    pw, ph = w - left - 10, h - bottom - top
    rates = sorted({s["rate"] for _, steps in series for s in steps}) or [1, 10]
    xs_min, xs_max = math.log10(min(rates)), math.log10(max(rates)) + 1e-9
    vals = [v for _, steps in series for s in steps if (v := value(s)) is not None and v < 10**8]
    if log_y:
        lo = math.log10(max(min(vals, default=0.1), 0.05))
        hi = math.log10(max(vals, default=1000) * 1.5)
    else:
        lo, hi = 0.0, max(vals, default=1) * 1.1

    def px(rate: float) -> float:
        return x + left + (math.log10(rate) - xs_min) / (xs_max - xs_min) * pw

    def py(v: float) -> float:
        v = math.log10(max(v, 10**lo)) if log_y else v
        v = min(v, hi)
        return y + top + ph - (v - lo) / (hi - lo) * ph

    out = [
        f'<text x="{x + left}" y="{y + 12}" font-size="13">{title}</text>',
        f'<rect x="{x + left}" y="{y + top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
    ]
    for rate in rates:
        out.append(f'<text x="{px(rate):.1f}" y="{y + top + ph + 14}" text-anchor="middle">{rate}</text>')
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        label = f"{10**v:.3g}" if log_y else f"{v:,.0f}"
        yy = y + top + ph - ph * i / 4
        out.append(f'<text x="{x + left - 4}" y="{yy + 4:.1f}" text-anchor="end">{label}</text>')
        out.append(f'<line x1="{x + left}" x2="{x + left + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>')
    for i, (name, steps) in enumerate(series):
        color = _COLORS[i % len(_COLORS)]
        points = [(px(s["rate"]), py(v if v is not None else 10**hi)) for s in steps if (v := value(s)) is not None]
        if points:
            path = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
            out += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{color}"/>' for a, b in points]
        out.append(f'<text x="{x + left + 8}" y="{y + top + 16 + 14 * i}" fill="{color}">{name}</text>')
    return out


def _wire_table(plan: dict[str, Any], records: list[Record]) -> list[str]:
    """The ``wire`` scenario: one row per variant (encoding, compression) at the one offered rate."""
    lines = [
        f"### Wire options: {plan['rooms']} rooms x {plan['members']} members, {plan['size']}-byte messages, "
        f"{plan['rates'][0]} msg/s for {plan['duration_s']:g} s",
        "",
        "Server CPU per delivered frame (its CPU time over the window / frames delivered in it) and TCP bytes the "
        "clients received per delivered frame (WebSocket headers, acks and compression included).",
        "",
        "| target | variant | frames delivered | server CPU % | server µs per frame | bytes per frame | e2e p99 ms |"
        " generator CPU % | sustainable |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        variant = r.get("variant", "?")
        if not r.get("steps"):
            lines.append(f"| {r['target']} | {variant} | error: {r.get('error')} | | | | | | |")
            continue
        s = r["steps"][-1]
        lines.append(
            f"| {r['target']} | {variant} | {s['delivered_in_window']:,} | {s['server_cpu']} | "
            f"{s.get('server_us_per_frame')} | {s.get('bytes_per_frame')} | {s['e2e_ms']['p99']} | {s['gen_cpu']} | "
            f"{'yes' if s['sustainable'] else 'no'} |"
        )
    lines.append("")
    return lines
