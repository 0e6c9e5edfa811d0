#!/usr/bin/python3
"""Time to ready without jupyter_client's fixed IOPub flush.

kernelbench's ready_s is KernelManager.start_kernel() + wait_for_ready(),
and wait_for_ready() in jupyter_client 7 always ends by waiting until IOPub
has been quiet for 0.2 s, whatever the kernel does. This measures, through
the same jupyter_client, launch until the kernel_info_reply and an IOPub
message have both arrived (the readiness wait_for_ready checks for), and
until a first cell ("1") is done, for each kernelspec in turn:

    /usr/bin/python3 bench/ready.py cellgate-python python3 [--rounds 7]
"""
import argparse
import contextlib
import statistics
import time
from queue import Empty

from jupyter_client.manager import KernelManager


def wait_ready(kc):
    """What wait_for_ready does, less its final 0.2 s flush: kernel_info
    until a reply comes, then an IOPub message."""
    while True:
        kc.kernel_info()
        try:
            reply = kc.get_shell_msg(timeout=1)
        except Empty:
            continue
        if reply["msg_type"] != "kernel_info_reply":
            continue
        try:
            kc.get_iopub_msg(timeout=0.2)
            return
        except Empty:
            pass


def run_cell(kc, code, timeout=300, **execute_kw):
    """Executes code (execute_kw: kc.execute's options, e.g. store_history)
    and waits for its idle and its reply; its stdout."""
    msg_id = kc.execute(code, **execute_kw)
    out = []
    while True:
        m = kc.get_iopub_msg(timeout=timeout)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream" and m["content"]["name"] == "stdout":
            out.append(m["content"]["text"])
        elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    kc.get_shell_msg(timeout=timeout)
    return "".join(out)


@contextlib.contextmanager
def running(km):
    """Starts km's kernel and a client's channels; yields the client, and
    stops both at the end."""
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def one(name, code="1", warm=0, specs=None, expect=None, later=None):
    """Launches kernelspec name (found by specs, a KernelSpecManager, or
    Jupyter's default); returns (seconds to ready, to the end of a first
    cell running code, median of `warm` more runs of it or None, seconds of
    the later cell or None). expect: what the first cell must print
    (RuntimeError otherwise). later: (pause, code, expect) - after the warm
    runs and a pause of that many seconds, a cell of other code (a user's
    next cell)."""
    km = KernelManager(kernel_name=name, **({"kernel_spec_manager": specs} if specs else {}))
    t0 = time.perf_counter()
    with running(km) as kc:
        wait_ready(kc)
        ready = time.perf_counter() - t0
        out = run_cell(kc, code)
        first = time.perf_counter() - t0
        if expect is not None and out != expect:
            raise RuntimeError(f"{name}: the first cell printed {out!r}")
        times = []
        for _ in range(warm):
            t = time.perf_counter()
            run_cell(kc, code)
            times.append(time.perf_counter() - t)
        next_cell = None
        if later:
            pause, later_code, later_expect = later
            time.sleep(pause)
            t = time.perf_counter()
            out = run_cell(kc, later_code)
            next_cell = time.perf_counter() - t
            if out != later_expect:
                raise RuntimeError(f"{name}: the later cell printed {out!r}")
        return ready, first, statistics.median(times) if times else None, next_cell


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kernels", nargs="+")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    one(a.kernels[0])  # jupyter_client's own first-use costs, not a kernel's
    res = {k: [] for k in a.kernels}
    for _ in range(a.rounds):
        for k in a.kernels:
            res[k].append(one(k))
    print(f"{'metric (no 0.2 s flush)':26}" + "".join(f"{k:>20}" for k in a.kernels)
          + (f"{'ratio':>10}" if len(a.kernels) == 2 else ""))
    for i, metric in enumerate(["ready_ms", "first_cell_ms"]):
        med = [1000 * statistics.median(r[i] for r in res[k]) for k in a.kernels]
        print(f"{metric:26}" + "".join(f"{m:>20.1f}" for m in med)
              + (f"{med[0] / med[1]:>10.3f}" if len(med) == 2 else ""))


if __name__ == "__main__":
    main()
