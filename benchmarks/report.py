"""The end of a run: the table (with ratios to the C baseline), the JSON file, the plot."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .search import Search, Trial


@dataclass
class Row:
    """One scenario x one forwarder."""

    scenario: str  # e.g. "fanout N=100"
    target: str  # "c", "c+srtp", "tureen" (native fan-out core) or "tureen-py" (Python core)
    consumers: int
    search: Search
    kib_per_consumer: float | None = None
    baseline: Row | None = None  # the C row this one is compared with
    extra: dict[str, Any] = field(default_factory=dict)

    def ratios(self) -> tuple[float | None, float | None]:
        """(output pps ratio, CPU ratio = C us/out / this us/out) against the baseline."""
        base = self.baseline.search.best if self.baseline else None
        mine = self.search.best
        if base is None or mine is None:
            return None, None
        pps = mine.out_pps / base.out_pps if base.out_pps else None
        cpu = (base.cpu_us_per_out / mine.cpu_us_per_out
               if base.cpu_us_per_out and mine.cpu_us_per_out else None)
        return pps, cpu

    def same_rate(self) -> dict[str, Any] | None:
        """The comparison at one common input rate (run.py's same-rate trials, run after the
        scenario's searches): C's µs/out and this row's, both at that rate, and C's ÷ this one
        (`ratio_cpu`, the table's `x C cpu @same`). `held`: both trials held it (< 0.1% loss)."""
        mine = self.search.same
        base = self.baseline.search.same if self.baseline else None
        if mine is None:
            return None
        data: dict[str, Any] = {"rate": mine.rate, "input_pps": mine.input_pps, "us_per_out": mine.cpu_us_per_out,
                                "held": mine.held}
        if base is not None:
            data["c_us_per_out"] = base.cpu_us_per_out
            data["c_input_pps"] = base.input_pps
            data["held"] = mine.held and base.held
            data["ratio_cpu"] = (base.cpu_us_per_out / mine.cpu_us_per_out
                                 if base.cpu_us_per_out and mine.cpu_us_per_out else None)
        return data

    def to_json(self) -> dict[str, Any]:
        pps, cpu = self.ratios()
        return {
            "scenario": self.scenario, "target": self.target, "consumers": self.consumers,
            "kib_per_consumer": self.kib_per_consumer, "ratio_out_pps": pps, "ratio_cpu": cpu,
            "same_rate": self.same_rate(), **self.extra, "search": self.search.to_json(),
        }


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


HEADER = ("scenario", "fwd", "held in pps", "out pps", "x C", "loss", "µs/out", "x C cpu",
          "x C cpu @same", "cpu%", "out/s/core", "p50/p99 µs @½", "C's @½", "KiB/cons", "limit")


def _latency(trial: Trial | None) -> str:
    return f"{trial.latency_p50_us:.0f}/{trial.latency_p99_us:.0f}" if trial else "-"


def _same_cell(row: Row) -> str:
    """`x C cpu @same`: on a Tureen row C's µs/out ÷ its own at the common rate (`*`: one of
    the two trials lost packets); on the C row the common input rate, e.g. `@1,240/s`."""
    same = row.same_rate()
    if same is None:
        return "-"
    if row.baseline is None:
        return f"@{same['input_pps']:,.0f}/s" + ("" if same["held"] else "*")
    if same.get("ratio_cpu") is None:
        return "-"
    return f"{same['ratio_cpu']:.2f}" + ("" if same["held"] else "*")


def table(rows: list[Row]) -> str:
    lines = []
    for row in rows:
        best = row.search.best
        half = row.search.half_rate
        pps_ratio, cpu_ratio = row.ratios()
        lines.append((
            row.scenario, row.target,
            _num(best.input_pps if best else None), _num(best.out_pps if best else None),
            _num(pps_ratio, "{:.2f}"),
            _num(best.loss * 100 if best else None, "{:.3f}%"),
            _num(best.cpu_us_per_out if best else None, "{:.2f}"),
            _num(cpu_ratio, "{:.2f}"),
            _same_cell(row),
            _num(best.cpu_percent if best else None, "{:.0f}"),
            _num(1e6 / best.cpu_us_per_out if best and best.cpu_us_per_out else None),
            _latency(half),
            _latency(row.baseline.search.half_rate) if row.baseline else "-",
            _num(row.kib_per_consumer, "{:.1f}"),
            row.search.limit,
        ))
    widths = [max(len(h), *(len(r[i]) for r in lines)) if lines else len(h) for i, h in enumerate(HEADER)]
    out = [" | ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)),
           "-|-".join("-" * w for w in widths)]
    for r in lines:
        out.append(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(out)


# Issue 17's ratio targets, CPU per output packet vs C at each one's own held rate:
# (scenario, what, minimum C-ratio). Printed, never asserted.
TARGETS = (
    ("fanout N=1", "plain RTP 1->1", 0.85),
    ("srtp-gcm N=1", "SRTP AES-GCM 1->1", 0.80),
    ("fanout N=100", "plain RTP 1->100", 0.95),
    ("srtp-gcm N=100", "SRTP AES-GCM 1->100", 0.90),
    ("srtp-cm N=100", "SRTP AES-CM 1->100", 0.80),
    ("meeting P=10", "meeting P=10", 0.85),
)
SAME_TARGET = 0.80  # every row at the common light rate (`x C cpu @same`)
PIPE_LATENCY_US = 200  # cross N: p50 @½ within this of the same-worker fanout N's
PIPE_OUTPUT_SHARE = 0.95  # cross N: output per core >= this x fanout N's


def _row(rows: list[Row], scenario: str, target: str) -> Row | None:
    return next((r for r in rows if r.scenario == scenario and r.target == target), None)


def _verdict(ratio: float, want: float) -> str:
    short = want - ratio  # "missed by 0.00" read as met; say how little instead
    return "met" if short <= 0 else f"missed by {short:.2f}" if short >= 0.005 else "missed by <0.01"


def _same_target(row: Row, want: float) -> str:
    """The targets line's second half: the CPU ratio at the common rate."""
    same = row.same_rate()
    if not same or same.get("ratio_cpu") is None:
        return "    at the same rate: no figure"
    lost = "" if same["held"] else "; a trial lost packets"
    return (f"    at the same rate, {same['input_pps']:,.0f} in/s: C {same['c_us_per_out']:.2f} vs "
            f"{same['us_per_out']:.2f} µs/out: {same['ratio_cpu']:.2f} cpu (>= {want:.2f}: "
            f"{_verdict(same['ratio_cpu'], want)}{lost})")


def _pipe_targets(rows: list[Row]) -> list[str]:
    """Each cross N row against the same run's single-worker fanout N row (the same core):
    the pipe hop's added latency (p50 at half of each one's held rate) and output per core."""
    lines: list[str] = []
    for cross in (r for r in rows if r.scenario.startswith("cross N=")):
        n = cross.scenario.split("=", 1)[1]
        single = _row(rows, f"fanout N={n}", cross.target)
        if single is None:
            continue
        c_half, s_half = cross.search.half_rate, single.search.half_rate
        if c_half and s_half:
            extra = c_half.latency_p50_us - s_half.latency_p50_us
            verdict = "met" if extra <= PIPE_LATENCY_US else f"missed by {extra - PIPE_LATENCY_US:,.0f} µs"
            lines.append(f"  pipe hop, cross N={n} p50 @½ within {PIPE_LATENCY_US} µs of fanout N={n}'s: "
                         f"{c_half.latency_p50_us:,.0f} vs {s_half.latency_p50_us:,.0f} µs "
                         f"(p99 {c_half.latency_p99_us:,.0f} vs {s_half.latency_p99_us:,.0f}): "
                         f"{extra:+,.0f} µs ({verdict})")
        c_best, s_best = cross.search.best, single.search.best
        if c_best and s_best and c_best.cpu_us_per_out and s_best.cpu_us_per_out:
            share = s_best.cpu_us_per_out / c_best.cpu_us_per_out
            lines.append(f"  pipe hop, cross N={n} output per core >= {PIPE_OUTPUT_SHARE:.2f}x fanout N={n}'s: "
                         f"{1e6 / c_best.cpu_us_per_out:,.0f} vs {1e6 / s_best.cpu_us_per_out:,.0f} out/s/core: "
                         f"{share:.2f}x ({_verdict(share, PIPE_OUTPUT_SHARE)})")
    return lines


def targets(rows: list[Row]) -> str:
    """One line per issue-17 ratio target found in this run: Tureen's ratios to its baseline
    (output pps, and CPU per output packet, the steadier one on a shared machine), from the
    native core's rows (`tureen`; the Python core's when only it ran, marked so), then the
    pipe hop's lines. Then one line per scenario that ran both cores: their CPU per output
    packet side by side."""
    lines: list[str] = []
    for scenario, what, want in TARGETS:
        row, note = _row(rows, scenario, "tureen"), ""
        if row is None:
            row, note = _row(rows, scenario, "tureen-py"), " [python core]"
        if row is None:
            continue
        pps, cpu = row.ratios()
        if cpu is None:
            why = "no C baseline in this run" if row.baseline is None else "no held rate"
            lines.append(f"  {what} >= {want:.2f}{note}: no figure ({why})")
            continue
        verdict = _verdict(cpu, want)
        lines.append(f"  {what} >= {want:.2f}{note}: {_num(pps, '{:.2f}')} pps; {cpu:.2f} cpu ({verdict} on CPU)"
                     + " at own held rates")
        lines.append(_same_target(row, SAME_TARGET))
    lines += _pipe_targets(rows)
    if lines:
        lines.insert(0, "targets (x baseline: out pps; CPU per output packet):")
    both = [s for s in dict.fromkeys(r.scenario for r in rows)
            if _row(rows, s, "tureen") and _row(rows, s, "tureen-py")]
    if both:
        lines += [""] if lines else []
        lines.append("fan-out cores (CPU per output packet, same run; x C cpu in brackets):")
    for scenario in both:
        native, python = _row(rows, scenario, "tureen"), _row(rows, scenario, "tureen-py")
        assert native is not None and python is not None
        n_us = native.search.best.cpu_us_per_out if native.search.best else None
        p_us = python.search.best.cpu_us_per_out if python.search.best else None
        if not n_us or not p_us:
            lines.append(f"  {scenario}: native {_num(n_us, '{:.2f}')} vs python {_num(p_us, '{:.2f}')} µs/out "
                         "(no held rate for one of them)")
            continue
        lines.append(f"  {scenario}: native {n_us:.2f} µs/out ({_num(native.ratios()[1], '{:.2f}')}x C) vs "
                     f"python {p_us:.2f} µs/out ({_num(python.ratios()[1], '{:.2f}')}x C): "
                     f"the Python core costs {p_us / n_us:.2f}x the native one")
        n_same, p_same = native.same_rate(), python.same_rate()
        if n_same and p_same and n_same["us_per_out"] and p_same["us_per_out"]:
            lines.append(f"    at the same rate, {n_same['input_pps']:,.0f} in/s: native {n_same['us_per_out']:.2f} vs python "
                         f"{p_same['us_per_out']:.2f} µs/out: {p_same['us_per_out'] / n_same['us_per_out']:.2f}x")
    return "\n".join(lines)


def write_json(path: Path, meta: dict[str, Any], rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": [r.to_json() for r in rows]}, indent=2))


def plot(path: Path, rows: list[Row]) -> str | None:
    """A PNG of every saturation search: output pps against input pps, held vs lost.
    Returns None when written, else why not (matplotlib is an optional extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    scenarios = list(dict.fromkeys(r.scenario for r in rows))
    cols = min(3, len(scenarios)) or 1
    nrows = (len(scenarios) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.8 * nrows), squeeze=False)
    colors = {"tureen": "tab:blue", "tureen-py": "tab:orange", "mediasoup-v2": "tab:green"}
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        for row in (r for r in rows if r.scenario == scenario):
            color = colors.get(row.target, "tab:gray")
            trials = sorted(row.search.trials, key=lambda t: t.input_pps)
            xs = [t.input_pps for t in trials]
            ax.plot(xs, [t.out_pps for t in trials], "-", alpha=0.4, color=color)
            for t in trials:
                ax.plot(t.input_pps, t.out_pps, "o" if t.held else "x", color=color)
            if row.search.best:
                ax.axvline(row.search.best.input_pps, linestyle=":", color=color,
                           label=f"{row.target}: {row.search.best.out_pps:,.0f} out/s held")
        ax.set_title(scenario)
        ax.set_xlabel("input packets/s")
        ax.set_ylabel("output packets/s (o held, x > 0.1% loss)")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(scenarios):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
