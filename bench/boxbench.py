#!/usr/bin/python3
"""Box creation time: `cellgate box -- /bin/true` side by side with
bubblewrap doing a comparable setup (new user/pid/mount/net/ipc/uts
namespaces, read-only /usr with merged-/usr links, /etc pieces, a bound
data directory, tmpfs /tmp, /dev, /proc, uid 1000, clean environment).
Each run creates the sandbox, runs /bin/true in it and tears it down;
medians over N runs, taken in turn.

    /usr/bin/python3 bench/boxbench.py [--n 30] [--cellgate build/cellgate]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time


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
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--cellgate", default=os.path.join(os.path.dirname(__file__), "..",
                                                       "build", "cellgate"))
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="boxbench-")
    os.chmod(data, 0o777)
    box = [a.cellgate, "box", "--", "/bin/true"]
    # The second cellgate row leaves out what bwrap does not do (cgroups).
    runs = {"cellgate box": (box, None),
            "cellgate box, no cgroup limits": (box, {"CELLGATE_MEMORY": "0",
                                                     "CELLGATE_PIDS": "0"}),
            "bwrap --unshare-all": (bwrap_argv(data), None)}
    if not shutil.which("bwrap"):
        del runs["bwrap --unshare-all"]
    times = {k: [] for k in runs}
    for argv, env in runs.values():  # warm caches once
        timed(argv, env)
    for _ in range(a.n):
        for k, (argv, env) in runs.items():
            times[k].append(timed(argv, env))
    shutil.rmtree(data, ignore_errors=True)
    print(f"{'sandbox (create, run /bin/true, remove)':42}{'median ms':>12}{'p90 ms':>10}")
    for k, v in times.items():
        v.sort()
        print(f"{k:42}{1000 * statistics.median(v):>12.1f}{1000 * v[int(0.9 * (len(v) - 1))]:>10.1f}")


if __name__ == "__main__":
    main()
