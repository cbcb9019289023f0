#!/usr/bin/env python3
"""Regenerates the load-generator matrix section of perf/RESULTS.md and its plots from one
results file written by perf/bench_matrix.sh.

Usage: python3 perf/report.py perf/results/<date>-<target>.json

Writes, beside the results file:
  <name>-throughput.svg  MB/s against record size, one line per (generator, acks, partitions):
                         spate bench and librdkafka on the same broker in the same run;
  <name>-latency.svg     produce latency percentiles (p50, p99, p99.9) against offered load, from
                         the open-loop rate sweep (latency from intended send times);
and replaces the text between the markers `<!-- bench_matrix:begin -->` and
`<!-- bench_matrix:end -->` in perf/RESULTS.md (appending the markers if missing) with the tables,
the ceilings and the ratios issue 4 sets targets for. It also prints that text. Standard library
only, so it runs wherever the matrix runs.
"""

import json
import math
import pathlib
import sys

BEGIN = "<!-- bench_matrix:begin -->"
END = "<!-- bench_matrix:end -->"
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def acks_name(acks):
    return "all" if str(acks) in ("-1", "all") else str(acks)


def size_name(size):
    if size >= 1 << 20:
        return f"{size >> 20} MiB"
    if size >= 1 << 10:
        return f"{size >> 10} KiB"
    return f"{size} B"


def spate_throughput_cells(results):
    """(size, acks, partitions) -> cell, for the max-rate cells."""
    cells = {}
    for cell in results["cells"]:
        if cell["config"].get("rate_per_second"):
            continue
        args = cell["config"]["args"]
        key = (args["record_size"], acks_name(args["acks"]), cell["config"]["partitions"])
        cells[key] = cell
    return cells


def rdkafka_cells(results):
    cells = {}
    for cell in results.get("rdkafka_cells", []):
        key = (cell["record_bytes"], acks_name(cell["acks"]), cell["partitions"])
        cells[key] = cell
    return cells


def sweep_cells(results):
    return sorted(
        (c for c in results["cells"] if c["config"].get("rate_per_second")),
        key=lambda c: c["config"]["rate_per_second"],
    )


def fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def svg_chart(title, x_label, y_label, series, log_x=False, log_y=False, x_ticks=None):
    """A line chart as SVG text. series: [(name, [(x, y), ...])]."""
    width, height = 760, 440
    left, right, top, bottom = 80, 220, 40, 60
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [(x, y) for _, data in series for x, y in data if y is not None and y > 0]
    if not points:
        return None
    tx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    ty = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    xs = [tx(x) for x, _ in points]
    ys = [ty(y) for _, y in points]
    x_min, x_max = min(xs), max(xs)
    y_min, y_max = (min(ys), max(ys)) if log_y else (0.0, max(ys))
    if x_max == x_min:
        x_max = x_min + 1
    if y_max == y_min:
        y_max = y_min + 1
    y_max += (y_max - y_min) * 0.05

    def px(x):
        return left + (tx(x) - x_min) / (x_max - x_min) * plot_w

    def py(y):
        return top + plot_h - (ty(y) - y_min) / (y_max - y_min) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="24" font-size="15">{title}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
        f'<text x="{left + plot_w / 2}" y="{height - 15}" text-anchor="middle">{x_label}</text>',
        f'<text transform="translate(20,{top + plot_h / 2}) rotate(-90)" text-anchor="middle">{y_label}</text>',
    ]
    # Y grid: five steps (decades on a log axis).
    if log_y:
        y_ticks = [10**e for e in range(math.floor(y_min), math.ceil(y_max) + 1)]
    else:
        y_ticks = [y_min + (y_max - y_min) * i / 5 for i in range(6)]
    for y in y_ticks:
        if not (y_min - 1e-9 <= ty(y) <= y_max + 1e-9):
            continue
        out.append(f'<line x1="{left}" y1="{py(y):.1f}" x2="{left + plot_w}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:,.{0 if y >= 10 or y == 0 else 2}f}</text>')
    for x, label in x_ticks or []:
        out.append(f'<text x="{px(x):.1f}" y="{top + plot_h + 18}" text-anchor="middle">{label}</text>')
    for i, (name, data) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        dash = ' stroke-dasharray="6,4"' if "librdkafka" in name else ""
        good = [(x, y) for x, y in data if y is not None and y > 0]
        if len(good) > 1:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in good)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for x, y in good:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
        ly = top + 10 + i * 18
        out.append(f'<line x1="{left + plot_w + 15}" y1="{ly}" x2="{left + plot_w + 40}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{left + plot_w + 45}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def per_cpu_ratio(cell, other):
    """spate bench's records per CPU-second of its generator over librdkafka's, when both are known."""
    ours = cell.get("generator_cpu_pct")
    theirs = other and other.get("client_cpu_pct")
    other_rate = other and other.get("records_per_s")
    if not ours or not theirs or not other_rate:
        return None
    return (cell["produced"]["records_per_s"] / ours) / (other_rate / theirs)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    results_path = pathlib.Path(sys.argv[1])
    results = json.loads(results_path.read_text())
    spate = spate_throughput_cells(results)
    rdkafka = rdkafka_cells(results)
    sweep = sweep_cells(results)
    stem = results_path.with_suffix("")
    name = stem.name
    iperf = results.get("iperf3_loopback_mb_per_s")
    fio = results.get("fio_write_mb_per_s")

    lines = [
        f"### Load-generator matrix: {results['target']}, {results['date']} (commit {results['commit']})",
        "",
        f"Command: `{results.get('command', 'perf/bench_matrix.sh')}`, then `python3 perf/report.py {results_path.as_posix()}`.",
        f"Load average at the end: {results.get('load_average_at_end', '?')}. "
        f"Loopback TCP ceiling (iperf3, one stream, same run): {fmt(iperf, 0)} MB/s. "
        f"Disk write ceiling (fio, 16 sequential O_DIRECT writers of 256 KiB, same run): {fmt(fio, 0)} MB/s. "
        f"Broker on CPU {results.get('broker_cpu', '?')}, generators on CPU {results.get('generator_cpu', '?')}. "
        "MB/s is 10^6 bytes of record values per second.",
        "",
        "Throughput at `--rate max`, `spate bench` and librdkafka's producer on the same broker, one after the other:",
        "",
        "| record | acks | partitions | spate bench rec/s | MB/s | p99 ms | generator CPU % | broker CPU % | librdkafka rec/s | MB/s | librdkafka CPU % | ratio | ratio per CPU-second |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(spate):
        size, acks, partitions = key
        cell = spate[key]
        produced = cell["produced"]
        other = rdkafka.get(key)
        ratio = None
        if other and other.get("records_per_s"):
            ratio = produced["records_per_s"] / other["records_per_s"]
        cpu_ratio = per_cpu_ratio(cell, other)
        lines.append(
            f"| {size_name(size)} | {acks} | {partitions} | {fmt(produced['records_per_s'], 0)} | "
            f"{fmt(produced['mb_per_s'])} | {fmt(produced['latency'].get('p99_ms'))} | "
            f"{fmt(cell.get('generator_cpu_pct'), 0)} | {fmt(cell.get('broker_cpu_pct'), 0)} | "
            f"{fmt(other and other.get('records_per_s'), 0)} | {fmt(other and other.get('mb_per_s'))} | "
            f"{fmt(other and other.get('client_cpu_pct'), 0)} | "
            f"{fmt(ratio, 2) + 'x' if ratio else '-'} | {fmt(cpu_ratio, 2) + 'x' if cpu_ratio else '-'} |"
        )
    lines += ["", "Open-loop rate sweep (1 KiB records, acks=1; latency from each record's intended send time):", ""]
    lines += [
        "| offered rec/s | achieved rec/s | MB/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in sweep:
        produced = cell["produced"]
        latency = produced["latency"]
        lines.append(
            f"| {fmt(cell['config']['rate_per_second'], 0)} | {fmt(produced['records_per_s'], 0)} | "
            f"{fmt(produced['mb_per_s'])} | {fmt(latency.get('p50_ms'), 2)} | {fmt(latency.get('p90_ms'), 2)} | "
            f"{fmt(latency.get('p99_ms'), 2)} | {fmt(latency.get('p99_9_ms'), 2)} | {fmt(latency.get('max_ms'), 2)} | "
            f"{cell['errors']} |"
        )

    # The target ratios, where the cells exist.
    targets = []
    peak_key = (1024, "1", 16)
    if peak_key in spate and iperf:
        mb = spate[peak_key]["produced"]["mb_per_s"]
        of_disk = f"; {100 * mb / fio:.0f}% of the disk's fio ceiling" if fio else ""
        targets.append(
            f"- 1 KiB, acks=1, 16 partitions: {mb:,.0f} MB/s = {100 * mb / iperf:.0f}% of iperf3 (target 60%){of_disk}."
        )
        all_key = (1024, "all", 16)
        if all_key in spate:
            mb_all = spate[all_key]["produced"]["mb_per_s"]
            targets.append(f"- acks=all: {mb_all:,.0f} MB/s = {100 * mb_all / mb:.0f}% of acks=1 (target 60%).")
    ratios = [
        spate[k]["produced"]["records_per_s"] / rdkafka[k]["records_per_s"]
        for k in spate
        if k in rdkafka and rdkafka[k].get("records_per_s")
    ]
    if ratios:
        targets.append(
            f"- spate bench / librdkafka records/s over {len(ratios)} cells: min {min(ratios):.2f}x, "
            f"max {max(ratios):.2f}x (target at least 1.5x)."
        )
    cpu_ratios = [r for r in (per_cpu_ratio(spate[k], rdkafka.get(k)) for k in spate) if r]
    if cpu_ratios:
        targets.append(
            f"- records per generator CPU-second, spate bench / librdkafka, over {len(cpu_ratios)} cells: "
            f"min {min(cpu_ratios):.2f}x, max {max(cpu_ratios):.2f}x (where the broker is the limit, "
            "both generators reach the same records/s, so this ratio shows which one has room)."
        )
    if sweep and peak_key in spate:
        peak = spate[peak_key]["produced"]["records_per_s"]
        half = min(sweep, key=lambda c: abs(c["config"]["rate_per_second"] - peak / 2))
        share = 100 * half["config"]["rate_per_second"] / peak
        targets.append(
            f"- p99 at {share:.0f}% of the peak ({fmt(half['config']['rate_per_second'], 0)} rec/s): "
            f"{fmt(half['produced']['latency'].get('p99_ms'), 2)} ms (target under 5 ms)."
        )
    if targets:
        lines += ["", "Against the issue 4 targets:", ""] + targets

    # Plots.
    series = []
    keys = sorted({(acks, partitions) for _, acks, partitions in spate})
    sizes = sorted({size for size, _, _ in spate})
    for acks, partitions in keys:
        series.append((
            f"spate bench acks={acks} p{partitions}",
            [(s, spate[(s, acks, partitions)]["produced"]["mb_per_s"]) for s in sizes if (s, acks, partitions) in spate],
        ))
        data = [(s, rdkafka[(s, acks, partitions)]["mb_per_s"]) for s in sizes if (s, acks, partitions) in rdkafka]
        if data:
            series.append((f"librdkafka acks={acks} p{partitions}", data))
    plots = []
    throughput_svg = svg_chart(
        f"Produce throughput vs record size ({results['target']})", "record size", "MB/s", series,
        log_x=True, x_ticks=[(s, size_name(s)) for s in sizes],
    )
    if throughput_svg:
        path = stem.parent / f"{name}-throughput.svg"
        path.write_text(throughput_svg)
        plots.append(path)
    if sweep:
        rates = [c["config"]["rate_per_second"] for c in sweep]
        latency_series = [
            (label, [(c["config"]["rate_per_second"], c["produced"]["latency"].get(field)) for c in sweep])
            for label, field in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p99_9_ms"))
        ]
        latency_svg = svg_chart(
            f"Produce latency vs offered load, 1 KiB, acks=1 ({results['target']})", "offered records/s",
            "latency ms (log)", latency_series, log_y=True,
            x_ticks=[(r, f"{r / 1000:,.0f}k") for r in rates],
        )
        if latency_svg:
            path = stem.parent / f"{name}-latency.svg"
            path.write_text(latency_svg)
            plots.append(path)
    if plots:
        lines += [""] + [f"![{p.stem}](results/{p.name})" for p in plots]

    section = "\n".join(lines) + "\n"
    print(section)
    results_md = pathlib.Path(__file__).resolve().parent / "RESULTS.md"
    text = results_md.read_text() if results_md.exists() else "# Performance results\n"
    block = f"{BEGIN}\n{section}{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    results_md.write_text(text)
    print(f"report: updated {results_md} and wrote {', '.join(str(p) for p in plots)}", file=sys.stderr)


if __name__ == "__main__":
    main()
