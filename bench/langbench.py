#!/usr/bin/python3
"""Every language in one table, from one run: for each installed
cellgate-<language> kernelspec, the time from launch to ready (kernel_info
reply + an IOPub message, without jupyter_client's 0.2 s flush), to the end
of a first hello-world cell, and the warm hello-world round trip (median of
N, after a first run so compiled languages hit their build cache); beside
them, the bare toolchain running the same program outside cellgate (for
compiled languages: compile + run, and run alone), so the overhead we add
is visible: `ratio` is first cell / (bare compile + bare run), and `after
ready` the same for the first cell less the time to ready: a client sends
its first cell once the kernel is ready, so ready + bare compile + bare
run is as fast as a first cell can be, and `after ready` shows what the
kernel adds to the cell itself. For compiled languages `next cell` is a
cell of other code (it compiles) a few seconds after the warm ones, as a
user's next cell: Java and Kotlin compile it in the kept compiler JVM.

Each of --rounds rounds launches a fresh kernel per language and, next to
it (before it every other round), runs the bare toolchain in a fresh
directory (a cold Go build cache, as a fresh kernel's), so both see the
same machine load; the table
shows the medians over the rounds. --vs PREFIX adds, in the same rounds,
the kernelspecs installed under PREFIX (`cellgate install --prefix`, e.g.
of another build) as rows "LANG@vs": a before/after comparison from one run.

    /usr/bin/python3 bench/langbench.py [--n 10] [--rounds 5] [--vs PREFIX] [LANG ...]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from jupyter_client.kernelspec import KernelSpecManager

from ready import one  # bench/ is on sys.path when run

HELLO = {  # language: (cell, file name, bare commands: compile or None, run)
    "python": ("print('hello')", "h.py", None, ["/usr/bin/python3", "h.py"]),
    "bash": ("echo hello", "h.sh", None, ["/bin/bash", "h.sh"]),
    "javascript": ("console.log('hello')", "h.js", None, ["/usr/bin/node", "h.js"]),
    "ruby": ("puts 'hello'", "h.rb", None, ["/usr/bin/ruby", "h.rb"]),
    "perl": ('print "hello\\n";', "h.pl", None, ["/usr/bin/perl", "h.pl"]),
    "php": ('echo "hello\\n";', "h.php", None, ["/usr/bin/php", "-r", 'echo "hello\\n";']),
    "c": ('#include <stdio.h>\nint main(void) { puts("hello"); }\n', "h.c",
          ["/usr/bin/gcc", "-std=c17", "-O2", "h.c", "-o", "h", "-lm"], ["./h"]),
    "cpp": ('#include <iostream>\nint main() { std::cout << "hello\\n"; }\n', "h.cpp",
            ["/usr/bin/g++", "-std=c++20", "-O2", "h.cpp", "-o", "h"], ["./h"]),
    "go": ('package main\nimport "fmt"\nfunc main() { fmt.Println("hello") }\n', "h.go",
           ["/usr/bin/go", "build", "-o", "h", "h.go"], ["./h"]),
    "java": ('public class H { public static void main(String[] a) '
             '{ System.out.println("hello"); } }\n', "H.java",
             ["/usr/bin/javac", "-d", ".", "H.java"], ["/usr/bin/java", "-cp", ".", "H"]),
    "rust": ('fn main() { println!("hello"); }\n', "h.rs",
             ["/usr/bin/rustc", "-O", "h.rs", "-o", "h"], ["./h"]),
    "kotlin": ('fun main() { println("hello") }\n', "h.kt",
               ["/usr/bin/kotlinc", "h.kt", "-include-runtime", "-d", "h.jar"],
               ["/usr/bin/java", "-jar", "h.jar"]),
}
NEXT_PAUSE = 5.0  # seconds between a compiled kernel's warm cells and its next cell


def kernel_times(specs, lang, n):
    """Launches cellgate-<lang> from specs (a KernelSpecManager); seconds
    to ready, to the end of the first hello cell (which must print hello),
    median of n warm hello cells (the same cell: a compiled language's
    build is cached), and for a compiled language a next cell of other code
    (it compiles) NEXT_PAUSE seconds later, as a user's next cell (0 for
    others)."""
    code = HELLO[lang][0]
    later = (NEXT_PAUSE, code.replace("hello", "hello again", 1), "hello again\n") \
        if HELLO[lang][2] else None
    ready, first, warm, next_cell = one(f"cellgate-{lang}", code, n, specs, "hello\n", later)
    return ready, first, warm or 0.0, next_cell or 0.0


def bare_times(lang, n):
    """The bare toolchain in a fresh directory: seconds to compile (0 for
    interpreters) and the median of n runs."""
    code, name, compile_cmd, run_cmd = HELLO[lang]
    d = tempfile.mkdtemp(prefix="langbench-")
    try:
        with open(os.path.join(d, name), "w") as f:
            f.write(code)
        env = {**os.environ, "GOCACHE": os.path.join(d, "gocache"), "GO111MODULE": "off",
               "HOME": d}

        def timed(cmd):
            t = time.perf_counter()
            subprocess.run(cmd, cwd=d, env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            return time.perf_counter() - t
        build = timed(compile_cmd) if compile_cmd else 0.0
        runs = sorted(timed(run_cmd) for _ in range(n))
        return build, statistics.median(runs)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def spec_manager(prefix=None):
    """The kernelspecs Jupyter finds (prefix None), or only those installed
    under prefix."""
    if prefix is None:
        return KernelSpecManager()
    return KernelSpecManager(kernel_dirs=[os.path.join(prefix, "share", "jupyter", "kernels")])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("langs", nargs="*")
    ap.add_argument("--n", type=int, default=10, help="warm cells and bare runs per round")
    ap.add_argument("--rounds", type=int, default=5, help="fresh kernels per language")
    ap.add_argument("--vs", metavar="PREFIX",
                    help="also the kernelspecs installed under PREFIX, as rows LANG@vs")
    a = ap.parse_args()
    sides = {"": spec_manager()}
    if a.vs:
        sides["@vs"] = spec_manager(a.vs)
    found = sides[""].find_kernel_specs()
    langs = a.langs or [l for l in HELLO if f"cellgate-{l}" in found]
    kernel_times(sides[""], langs[0], 0)  # jupyter_client's own first-use costs
    kern = {(lang, side): [] for lang in langs for side in sides}
    bare = {lang: [] for lang in langs}
    for r in range(a.rounds):
        for lang in langs:
            # every other round in the opposite order: no side always goes first
            order = list(sides.items()) + [("bare", None)]
            for side, specs in order if r % 2 == 0 else reversed(order):
                if specs is None:
                    bare[lang].append(bare_times(lang, a.n))
                else:
                    kern[lang, side].append(kernel_times(specs, lang, a.n))

    def med(values):
        return 1000 * statistics.median(values)

    def spread(values):
        values = list(values)
        return f"{1000 * min(values):.0f}-{1000 * max(values):.0f}"

    print(f"{'language':15}{'ready ms':>10}{'first cell ms':>15}{'warm cell ms':>14}"
          f"{'next cell ms':>14}{'bare compile ms':>17}{'bare run ms':>13}{'ratio':>8}"
          f"{'after ready':>13}{'next/bare':>11}{'first cell range ms':>21}")
    for lang in langs:
        build = med(b[0] for b in bare[lang])
        run = med(b[1] for b in bare[lang])
        for side in sides:
            times = kern[lang, side]
            first = med(t[1] for t in times)
            after = med(t[1] - t[0] for t in times)
            later = med(t[3] for t in times)
            print(f"{lang + side:15}{med(t[0] for t in times):>10.1f}{first:>15.1f}"
                  f"{med(t[2] for t in times):>14.1f}"
                  f"{(f'{later:.1f}' if later else '-'):>14}"
                  f"{(f'{build:.1f}' if build else '-'):>17}{run:>13.1f}"
                  f"{first / (build + run):>8.2f}{after / (build + run):>13.2f}"
                  f"{(f'{later / (build + run):.2f}' if later else '-'):>11}"
                  f"{spread(t[1] for t in times):>21}")
    print(f"medians of {a.rounds} rounds; ratio: first cell / (bare compile + bare run); "
          "after ready: (first cell - ready) / the same, the part of the first cell a "
          "client waits for once the kernel is ready (its cell cannot start sooner); "
          f"next cell: a compiled kernel's cell of other code {NEXT_PAUSE:g} s after its "
          "warm cells (it compiles), next/bare its ratio; first cell range: the fastest "
          "and slowest round")
    if {"java", "kotlin"} & set(langs):
        print("java, kotlin: cellgate runs javac/kotlinc with -J-XX:TieredStopAtLevel=1 "
              "-J-XX:+UseSerialGC (kernel/drivers/compiled.py); the bare compile has the defaults")


if __name__ == "__main__":
    main()
