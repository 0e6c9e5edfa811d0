#!/usr/bin/python3
"""Every language in one table, from one run: for each installed
cellgate-<language> kernelspec, the time from launch to ready (kernel_info
reply + an IOPub message, without jupyter_client's 0.2 s flush), to the end
of a first hello-world cell, and the warm hello-world round trip (median of
N, after a first run so compiled languages hit their build cache); beside
them, the bare toolchain running the same program outside cellgate (for
compiled languages: compile + run, and run alone), so the overhead we add
is visible.

    /usr/bin/python3 bench/langbench.py [--n 10] [LANG ...]
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


def kernel_times(lang, n):
    return one(f"cellgate-{lang}", HELLO[lang][0], n)


def bare_times(lang, n):
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


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("langs", nargs="*")
    ap.add_argument("--n", type=int, default=10)
    a = ap.parse_args()
    specs = KernelSpecManager().find_kernel_specs()
    langs = a.langs or [l for l in HELLO if f"cellgate-{l}" in specs]
    kernel_times(langs[0], 1)  # jupyter_client's own first-use costs
    print(f"{'language':11}{'ready ms':>10}{'first cell ms':>15}{'warm cell ms':>14}"
          f"{'bare compile ms':>17}{'bare run ms':>13}")
    for lang in langs:
        ready, first, warm = kernel_times(lang, a.n)
        build, run = bare_times(lang, a.n)
        print(f"{lang:11}{1000 * ready:>10.1f}{1000 * first:>15.1f}{1000 * warm:>14.1f}"
              f"{(f'{1000 * build:.1f}' if build else '-'):>17}{1000 * run:>13.1f}")


if __name__ == "__main__":
    main()
