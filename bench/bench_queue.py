#!/usr/bin/python3
"""Side-by-side messaging benchmark: corio (bench/queue.lua) against Debian's python3
asyncio (bench/queue_asyncio.py), run alternately in one invocation; prints the median CPU
time of each workload and the ratios.

Usage: /usr/bin/python3 bench/bench_queue.py [--runs 5] [--corio build/corio]
       [--python /usr/bin/python3] [--items 1000000] [--messages 200000] [--publishes 2000000]
"""
import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = {}
    for line in out.splitlines():
        name, count, seconds = line.split()
        result[name] = (int(count), float(seconds))
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--corio", default=os.path.join(HERE, "..", "build", "corio"))
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--publishes", type=int, default=2_000_000)
    a = ap.parse_args()
    sizes = [str(a.items), str(a.messages), str(a.publishes)]
    corio_cmd = [a.corio, os.path.join(HERE, "queue.lua")] + sizes
    py_cmd = [a.python, os.path.join(HERE, "queue_asyncio.py")] + sizes
    version = subprocess.run([a.python, "--version"], capture_output=True, text=True).stdout
    samples = {"corio": {}, "asyncio": {}}
    for i in range(a.runs):
        for who, cmd in (("corio", corio_cmd), ("asyncio", py_cmd)):
            for name, (count, secs) in run(cmd).items():
                samples[who].setdefault(name, []).append((count, secs))
        print(f"run {i + 1}/{a.runs} done", file=sys.stderr)

    def med(who, name):
        s = samples[who][name]
        return s[0][0], statistics.median(x[1] for x in s)

    print(f"median of {a.runs} runs, CPU time; asyncio = {version.strip()} ({a.python})")
    print(f"{'workload':<44} {'corio':>14} {'asyncio':>14} {'ratio':>7}")
    n, c = med("corio", "queue")
    _, p = med("asyncio", "queue")
    print(f"{'Queue(1000), 1 producer/1 consumer, items/s':<44} "
          f"{n / c / 1e6:>12.2f} M {n / p / 1e6:>12.2f} M {p / c:>6.1f}x")
    n, c = med("corio", "bus")
    _, p = med("asyncio", "bus")
    print(f"{'bus, 1 publisher -> 10 subscribers, deliv/s':<44} "
          f"{n / c / 1e6:>12.2f} M {n / p / 1e6:>12.2f} M {p / c:>6.1f}x")
    n, c = med("corio", "nobody")
    _, p = med("asyncio", "nobody")
    print(f"{'publish to a topic nobody listens, ns each':<44} "
          f"{c / n * 1e9:>12.0f} ns {p / n * 1e9:>11.0f} ns {p / c:>6.1f}x")


if __name__ == "__main__":
    main()
