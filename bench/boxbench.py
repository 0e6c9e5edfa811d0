#!/usr/bin/python3
"""Box creation time, side by side with bubblewrap doing a comparable setup
(new user/pid/mount/net/ipc/uts namespaces, read-only /usr with merged-/usr
links, /etc pieces, a bound data directory, tmpfs /tmp, /dev, /proc, uid
1000, clean environment). Each run creates the sandbox, runs /bin/true in
it and tears it down.

Two kinds of rows:
  - whole processes: `cellgate box -- /bin/true` (with the default limits,
    whose /mnt/data is a filesystem of its own as root; without that
    volume; without cgroups either), and `bwrap ... /bin/true`;
  - in one process: build/bench/boxloop creating a box, running /bin/true
    and removing the box in a loop (what a kernel pays per box, without a
    program's start-up around it), beside the same bwrap figure.
Rounds are taken in turn (one of each, N times), and every row shows its
median, p90 and its ratio to bwrap's median.

    /usr/bin/python3 bench/boxbench.py [--n 30] [--cellgate build/cellgate]
        [--boxloop build/bench/boxloop]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NO_VOLUME = {"CELLGATE_DATA_SIZE": "0"}
NO_LIMITS = {"CELLGATE_DATA_SIZE": "0", "CELLGATE_MEMORY": "0", "CELLGATE_PIDS": "0"}
BWRAP = "bwrap --unshare-all"


def bwrap_argv(data):
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session",
            "--uid", "1000", "--gid", "1000", "--hostname", "cellgate", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/mnt/data",
            "--ro-bind", "/usr", "/usr"]
    for d in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        p = "/" + d
        if os.path.islink(p):
            argv += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            argv += ["--ro-bind", p, p]
    for e in ("ld.so.cache", "alternatives", "localtime", "python3", "python3.11", "ssl"):
        if os.path.exists("/etc/" + e):
            argv += ["--ro-bind", "/etc/" + e, "/etc/" + e]
    argv += ["--bind", data, "/mnt/data", "--tmpfs", "/tmp", "--dev", "/dev", "--proc", "/proc",
             "--chdir", "/mnt/data", "/bin/true"]
    return argv


def timed(argv, env=None):
    """Seconds one whole process took, as one sample list."""
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    return [time.perf_counter() - t]


def boxloop(argv, env=None):
    """Seconds per round of an in-process loop (boxloop -r prints them)."""
    out = subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, env={**os.environ, **(env or {})}).stdout
    return [float(line.split()[1]) / 1000 for line in out.splitlines()
            if line.startswith("round ")]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="rounds of each row (default 30)")
    ap.add_argument("--cellgate", default=os.path.join(HERE, "..", "build", "cellgate"))
    ap.add_argument("--boxloop", default=None,
                    help="the in-process loop (default: bench/boxloop beside --cellgate)")
    a = ap.parse_args()
    loop = a.boxloop or os.path.join(os.path.dirname(a.cellgate), "bench", "boxloop")
    data = tempfile.mkdtemp(prefix="boxbench-")
    os.chmod(data, 0o777)
    box = [a.cellgate, "box", "--", "/bin/true"]
    # Each boxloop call runs 3 boxes in one process (plus one to warm up).
    inproc = [loop, "-r", "3"]
    rows = {"cellgate box": (timed, box, None),
            "cellgate box, no data volume": (timed, box, NO_VOLUME),
            "cellgate box, no volume, no cgroups": (timed, box, NO_LIMITS),
            "in one process: box": (boxloop, inproc, None),
            "in one process: box, no data volume": (boxloop, inproc, NO_VOLUME),
            BWRAP: (timed, bwrap_argv(data), None)}
    if not shutil.which("bwrap"):
        del rows[BWRAP]
    if not os.access(loop, os.X_OK):
        print(f"({loop} is not built: `make {os.path.relpath(loop)}` for the in-process rows)")
        rows = {k: v for k, v in rows.items() if v[0] is not boxloop}
    if os.geteuid() != 0:  # the data volume needs root: those rows equal the next ones
        rows = {k: v for k, v in rows.items() if v[2] is not None or k == BWRAP}
    times = {k: [] for k in rows}
    for how, argv, env in rows.values():  # warm caches once
        how(argv, env)
    for _ in range(a.n):
        for k, (how, argv, env) in rows.items():
            times[k] += how(argv, env)
    shutil.rmtree(data, ignore_errors=True)
    base = statistics.median(times[BWRAP]) if BWRAP in times else None
    print(f"{'create, run /bin/true, remove':42}{'median ms':>11}{'p90 ms':>9}"
          f"{'vs bwrap':>10}")
    for k, v in times.items():
        v.sort()
        med = statistics.median(v)
        ratio = f"{med / base:.2f}x" if base else "-"
        print(f"{k:42}{1000 * med:>11.1f}{1000 * v[int(0.9 * (len(v) - 1))]:>9.1f}{ratio:>10}")
    print(f"({a.n} rounds of each in turn; in-process rows: {3 * a.n} boxes)")


if __name__ == "__main__":
    main()
