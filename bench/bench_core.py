#!/usr/bin/env python3
"""Core benchmarks, side by side in one run: corio, bare Lua coroutines, CPython asyncio
(Debian's /usr/bin/python3) and Node. Prints medians of --runs runs and the ratios.

usage: bench/bench_core.py [--runs N] [--corio build/corio] [--blocked]

By default the contenders' runs are interleaved. On these VMs the first process to touch
memory that another process has just freed pays for it again (host-side faults): every
contender pays it in interleaved runs. --blocked runs each contender's runs back to back.
"""
import argparse, json, os, re, statistics, subprocess, time

HERE = os.path.dirname(os.path.abspath(__file__))

def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return out

def seconds(out):
    return float(re.search(r"([0-9.]+) s(?: wall)?$", out.strip().splitlines()[-1].split(",")[0]).group(1))

def rss_mib(out):
    m = re.search(r"peak RSS ([0-9.]+) MiB", out)
    return float(m.group(1)) if m else float("nan")

def startup(cmd, n=300):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--corio", default=os.path.join(HERE, "..", "build", "corio"))
    ap.add_argument("--blocked", action="store_true")
    ap.add_argument("--json", metavar="PATH",
                    help="also write the medians and every sample as JSON (bench/chart.py reads it)")
    a = ap.parse_args()
    corio, py = a.corio, "/usr/bin/python3"
    res = {k: [] for k in ["corio_sg", "floor_sg", "py_sg", "corio_sl", "py_sl", "node_sl",
                           "corio_rss", "py_rss", "node_rss"]}
    jobs = [
        ("corio_sg", [corio, f"{HERE}/spawn_gather.lua"], None),
        ("floor_sg", ["lua5.4", f"{HERE}/spawn_gather_floor.lua"], None),
        ("py_sg", [py, f"{HERE}/spawn_gather.py"], None),
        ("corio_sl", [corio, f"{HERE}/sleep_many.lua"], "corio_rss"),
        ("py_sl", [py, f"{HERE}/sleep_many.py"], "py_rss"),
        ("node_sl", ["node", f"{HERE}/sleep_many.js"], "node_rss"),
    ]
    if a.blocked:
        order = [j for j in jobs for _ in range(a.runs)]
    else:  # interleaved, so that load changes hit every contender alike
        order = [j for _ in range(a.runs) for j in jobs]
    for key, cmd, rss_key in order:
        o = run(cmd)
        res[key].append(seconds(o))
        if rss_key:
            res[rss_key].append(rss_mib(o))
    m = {k: statistics.median(v) for k, v in res.items()}
    st_corio = startup([corio, "-e", ""])
    st_lua = startup(["lua5.4", "-e", ""])
    st_py = startup([py, "-c", "import asyncio"], 50)
    print(f"medians of {a.runs} {'back-to-back' if a.blocked else 'interleaved'} runs")
    print("| workload | corio | peer | ratio |")
    print("|---|---|---|---|")
    print(f"| 100k tasks spawn+sleep(0)+gather (CPU s) | {m['corio_sg']:.3f} | asyncio {m['py_sg']:.3f} | {m['py_sg']/m['corio_sg']:.1f}x faster |")
    print(f"| same | {m['corio_sg']:.3f} | bare Lua coroutines {m['floor_sg']:.3f} | {m['corio_sg']/m['floor_sg']:.2f}x the floor |")
    print(f"| 100k tasks sleeping 1 s, wall s | {m['corio_sl']:.3f} | asyncio {m['py_sl']:.3f}, node {m['node_sl']:.3f} | |")
    print(f"| same, peak RSS MiB | {m['corio_rss']:.1f} ({m['corio_rss']*1048576/100000:.0f} B/task) | asyncio {m['py_rss']:.1f}, node {m['node_rss']:.1f} | |")
    print(f"| startup -e '' ms | {st_corio*1e3:.2f} | lua5.4 {st_lua*1e3:.2f}, python3 asyncio {st_py*1e3:.1f} | {st_corio/st_lua:.2f}x lua |")

    if a.json:
        out = {
            "benchmark": "bench_core", "runs": a.runs,
            "order": "back-to-back" if a.blocked else "interleaved",
            "workloads": [
                {"name": "100k tasks, spawn + sleep(0) + gather", "unit": "CPU s", "better": "lower",
                 "values": {"corio": m["corio_sg"], "asyncio": m["py_sg"],
                            "bare Lua coroutines": m["floor_sg"]}},
                {"name": "100k tasks sleeping 1 s, gathered", "unit": "wall s", "better": "lower",
                 "values": {"corio": m["corio_sl"], "asyncio": m["py_sl"], "Node": m["node_sl"]}},
                {"name": "same, peak RSS", "unit": "MiB", "better": "lower",
                 "values": {"corio": m["corio_rss"], "asyncio": m["py_rss"], "Node": m["node_rss"]}},
                {"name": "start-up, -e ''", "unit": "ms", "better": "lower",
                 "values": {"corio": st_corio * 1e3, "lua5.4": st_lua * 1e3,
                            "python3 -c 'import asyncio'": st_py * 1e3}},
            ],
            "samples": res,
        }
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)

if __name__ == "__main__":
    main()
