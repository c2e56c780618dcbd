#!/usr/bin/env python3
"""Draw the README's benchmark chart from the benchmarks' JSON output, as an SVG.

    bench/bench_core.py --runs 5 --json /tmp/core.json     # interleaved runs (the default)
    bench/chart.py /tmp/core.json [more.json ...] -o bench/chart.svg

Each workload of each file becomes one panel of horizontal bars, corio first, its value
written next to each bar; the title says how the runs were ordered. Plain Python (no
gnuplot or matplotlib needed): the SVG is text, so a regenerated chart diffs in review.
A JSON file holds {"benchmark", "runs", "order", "workloads": [{"name", "unit", "better",
"values": {contender: median}}]}.
"""
import argparse, html, json, sys

BAR_H, GAP, LABEL_W, PLOT_W, PANEL_GAP, FONT = 16, 4, 230, 360, 26, 12


def panel(y, w, order, runs):
    items = sorted(w["values"].items(), key=lambda kv: (kv[0] != "corio", kv[1]))
    top = max(v for _, v in items) or 1
    out = [f'<text x="0" y="{y + FONT}" font-weight="bold">{html.escape(w["name"])} '
           f'({html.escape(w["unit"])}, {w.get("better", "lower")} is better; '
           f'median of {runs} {order} runs)</text>']
    y += FONT + 8
    for name, v in items:
        width = max(1, v / top * PLOT_W)
        colour = "#c0392b" if name == "corio" else "#7f8c8d"
        out.append(f'<text x="{LABEL_W - 6}" y="{y + BAR_H - 4}" text-anchor="end">'
                   f'{html.escape(name)}</text>')
        out.append(f'<rect x="{LABEL_W}" y="{y}" width="{width:.1f}" height="{BAR_H}" '
                   f'fill="{colour}"/>')
        out.append(f'<text x="{LABEL_W + width + 4:.1f}" y="{y + BAR_H - 4}">{v:.3g}</text>')
        y += BAR_H + GAP
    return out, y + PANEL_GAP


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+")
    ap.add_argument("-o", "--output", default="-")
    a = ap.parse_args()
    body, y = [], 10
    for path in a.json:
        with open(path) as f:
            data = json.load(f)
        for w in data["workloads"]:
            lines, y = panel(y, w, data.get("order", "?"), data.get("runs", "?"))
            body += lines
    width = LABEL_W + PLOT_W + 80
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
           f'font-family="sans-serif" font-size="{FONT}">',
           f'<rect width="{width}" height="{y}" fill="white"/>'] + body + ["</svg>"]
    text = "\n".join(svg) + "\n"
    if a.output == "-":
        sys.stdout.write(text)
    else:
        with open(a.output, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
