#!/usr/bin/python3
"""The warm round trip beside the client's own CPU for it.

kernelbench's warm execute is the wall time from execute_request to the
cell's idle and reply, through jupyter_client. That client spends CPU of
its own on every cell (signing, decoding five messages, parsing their
header dates), and no kernel can answer faster than its client reads. For
each kernelspec in turn this runs WARMUP cells of `1`, then N more
(store_history=False, as kernelbench sends them), and
prints the median round trip beside the client process's own CPU per
cell (os.times() around the N cells), and the ratio of the two:

    /usr/bin/python3 bench/clientcpu.py cellgate-python python3 [--n 2000]

A round trip close to the client's CPU means the client is the floor;
the goal "0.3x ipykernel's round trip" is below reach for any kernel when
the client's CPU per cell alone is above 0.3x of ipykernel's p50.
"""
import argparse
import os
import statistics
import time

from jupyter_client.manager import KernelManager

from ready import run_cell, running, wait_ready  # bench/ is on sys.path when run

WARMUP = 50


def measure(name, n):
    """(median round trip, client CPU per cell), seconds, for n cells."""
    with running(KernelManager(kernel_name=name)) as kc:
        wait_ready(kc)
        for _ in range(WARMUP):
            run_cell(kc, "1", store_history=False)
        lat = []
        before = os.times()
        for _ in range(n):
            t = time.perf_counter()
            run_cell(kc, "1", store_history=False)
            lat.append(time.perf_counter() - t)
        after = os.times()
        cpu = (after.user - before.user) + (after.system - before.system)
        return statistics.median(lat), cpu / n


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kernels", nargs="+")
    ap.add_argument("--n", type=int, default=2000)
    a = ap.parse_args()
    print(f"{'kernelspec':24}{'p50 ms':>10}{'client cpu ms/cell':>20}{'cpu / p50':>11}")
    for name in a.kernels:
        p50, cpu = measure(name, a.n)
        print(f"{name:24}{1000 * p50:>10.3f}{1000 * cpu:>20.3f}{cpu / p50:>11.2f}")
    print(f"({a.n} cells of `1` each after {WARMUP} unmeasured; client: this process)")


if __name__ == "__main__":
    main()
