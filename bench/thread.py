#!/usr/bin/env python3
"""corio.thread benchmarks, contenders interleaved in one run; medians of --runs runs, ratios.

usage: bench/thread.py [--runs N] [--corio build/corio] [--calls 100000] [--primes 2000000]

overhead: N trivial calls with 64 in flight: corio thread.run, Node worker_threads (a message
          round trip, one worker per core), asyncio.to_thread (Debian's /usr/bin/python3),
          luv new_work (libuv's shared pool, Debian's lua-luv for lua5.4) when installed.
speedup:  counting primes in 64 pieces, on the loop alone vs thread.map, a 10 ms ticker running.
copy:     a 1 MiB string and a 100,000-entry table (bench/thread_copy.lua, medians inside).
"""
import argparse, os, re, statistics, subprocess

HERE = os.path.dirname(os.path.abspath(__file__))

def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

def rate(out):
    return float(re.search(r"(\d+) calls/s", out).group(1))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--corio", default=os.path.join(HERE, "..", "build", "corio"))
    ap.add_argument("--calls", type=int, default=100000)
    ap.add_argument("--primes", type=int, default=2000000)
    a = ap.parse_args()
    n = str(a.calls)
    contenders = {
        "corio thread.run": [a.corio, os.path.join(HERE, "thread_overhead.lua"), n],
        "node worker_threads": ["node", os.path.join(HERE, "thread_overhead.js"), n],
        "asyncio to_thread": ["/usr/bin/python3", os.path.join(HERE, "thread_overhead.py"), n],
    }
    try:
        run(["lua5.4", "-e", "require 'luv'"])
        contenders["luv new_work"] = ["lua5.4", os.path.join(HERE, "thread_overhead_luv.lua"), n]
    except Exception:
        pass
    rates = {k: [] for k in contenders}
    single, threads, ticks, cores = [], [], [], []
    for _ in range(a.runs):
        for k, cmd in contenders.items():
            rates[k].append(rate(run(cmd)))
        out = run([a.corio, os.path.join(HERE, "thread_speedup.lua"), "single", str(a.primes)])
        single.append(float(re.search(r"single ([0-9.]+) s", out).group(1)))
        out = run([a.corio, os.path.join(HERE, "thread_speedup.lua"), "threads", str(a.primes)])
        m = re.search(r"threads ([0-9.]+) s.*\(([0-9.]+)%\)", out)
        threads.append(float(m.group(1)))
        ticks.append(float(m.group(2)))
        cores.append(float(re.search(r"cpu/wall ([0-9.]+)", out).group(1)))
    print(f"overhead: {a.calls} trivial calls, 64 in flight, median of {a.runs} runs")
    print("| contender | calls/s | corio / it |")
    print("| --- | ---: | ---: |")
    c = statistics.median(rates["corio thread.run"])
    for k, v in rates.items():
        m = statistics.median(v)
        print(f"| {k} | {m:,.0f} | {c / m:.2f}x |")
    s, t = statistics.median(single), statistics.median(threads)
    print()
    print(f"speedup: primes below {a.primes} in 64 pieces, median of {a.runs} runs")
    print(f"| single thread | {s:.3f} s |")
    print(f"| thread.map on the default pool | {t:.3f} s ({t / s:.2f}x the single-thread time) |")
    print(f"| 10 ms ticker during thread.map | {statistics.median(ticks):.0f} % of its ticks "
          f"(runs: {', '.join(f'{x:.0f}' for x in ticks)}) |")
    print(f"| cores the machine gave (cpu/wall) | {statistics.median(cores):.2f} "
          f"(runs: {', '.join(f'{x:.2f}' for x in cores)}) |")
    print()
    print("copy (medians of 20 inside one run):")
    print(run([a.corio, os.path.join(HERE, "thread_copy.lua")]))

if __name__ == "__main__":
    main()
