#!/usr/bin/python3
"""layers.py - checks that cellgate's C code is layered: calls and includes
only go down, never in a circle.

Two checks, both computed from the code itself, not from a list kept by hand:

1. Includes: each top folder may include only its own layer and those
   below it (FOLDER_MAY_INCLUDE). common/ includes no other project folder,
   sandbox/ only common/, gateway/ and registry/ never kernel/ or sandbox/.
   Includes are written from the repository root ("common/wire.h"). No two
   modules (a .c and its .h) include each other, directly or in a circle.

2. Calls: for every object file of the build, `nm` tells which symbols it
   defines and which it uses. File A depends on file B when A uses a symbol
   B defines. A strongly connected group of two or more files is a cycle:
   those files call each other, directly or around a circle, and the check
   fails naming them and the symbols that close the circle.

Usage:
  scripts/layers.py [--root DIR] [--build DIR]   both checks (make test runs it)
  scripts/layers.py --objects A.o B.o ...        the call check on these objects
  scripts/layers.py --graph [--build DIR]        print the file graph, layer by layer

Exit status 0 when clean, 1 with a message per violation.
"""
import argparse
import os
import re
import subprocess
import sys

# Which project folders the files of each top folder may include. A folder
# not named here (tests/, bench/) may include anything.
FOLDER_MAY_INCLUDE = {
    "common": {"common"},
    "sandbox": {"sandbox", "common"},
    "kernel": {"kernel", "sandbox", "common"},
    "fetch": {"fetch", "common"},
    "registry": {"registry", "common"},
    "gateway": {"gateway", "common"},
    "cli": {"cli", "gateway", "registry", "fetch", "kernel", "sandbox", "common"},
}
PROJECT_FOLDERS = set(FOLDER_MAY_INCLUDE) | {"tests"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def source_files(root):
    """The C sources and headers of the project folders, relative to root."""
    out = []
    for top in sorted(FOLDER_MAY_INCLUDE):
        for d, _, names in os.walk(os.path.join(root, top)):
            for n in names:
                if n.endswith((".c", ".h")):
                    out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


def check_includes(root):
    """Returns a list of human messages, one per include that breaks the rules."""
    problems = []
    modules = {}
    for f in source_files(root):
        modules.setdefault(os.path.splitext(f)[0], {})
        top = f.split(os.sep)[0]
        allowed = FOLDER_MAY_INCLUDE[top]
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        for m in INCLUDE.finditer(text):
            inc = m.group(1)
            line = text.count("\n", 0, m.start()) + 1
            first = inc.split("/")[0]
            if "/" not in inc or first not in PROJECT_FOLDERS:
                problems.append('%s:%d: include "%s" is not written from the repository '
                                'root (e.g. "common/wire.h")' % (f, line, inc))
            elif first not in allowed:
                problems.append('%s:%d: %s/ may not include %s/ ("%s"): %s/ may include '
                                'only %s' % (f, line, top, first, inc, top,
                                             ", ".join(sorted(a + "/" for a in allowed))))
            elif not os.path.exists(os.path.join(root, inc)):
                problems.append('%s:%d: include "%s" names no file' % (f, line, inc))
            else:
                a, b = os.path.splitext(f)[0], os.path.splitext(inc)[0]
                if a != b:
                    modules[a].setdefault(b, []).append(f + " includes " + inc)
    for comp in strongly_connected(modules):
        if len(comp) > 1:
            members = set(comp)
            why = [w for a in comp for b in sorted(modules[a]) if b in members
                   for w in modules[a][b][:1]]
            problems.append("these modules include each other in a circle: %s\n  %s"
                            % (", ".join(comp), "\n  ".join(why)))
    return problems


def nm_symbols(obj):
    """(defined, undefined) global symbol sets of one object file."""
    out = subprocess.run(["nm", "-P", obj], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind in "TDBRVWGSC" or kind in "i":
            defined.add(name)
    return defined, undefined


def call_graph(objects, names):
    """edges[a][b] = sorted symbols a uses that b defines (a != b)."""
    syms = {o: nm_symbols(o) for o in objects}
    owner = {}
    for o in objects:
        for s in syms[o][0]:
            owner.setdefault(s, o)
    edges = {names[o]: {} for o in objects}
    for o in objects:
        for s in syms[o][1]:
            d = owner.get(s)
            if d and d != o:
                edges[names[o]].setdefault(names[d], []).append(s)
    for a in edges:
        for b in edges[a]:
            edges[a][b].sort()
    return edges


def strongly_connected(edges):
    """Tarjan's algorithm, iteratively: the components, each a sorted list."""
    index, low, on, stack, comps = {}, {}, set(), [], []
    counter = [0]
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, {})))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                comps.append(sorted(comp))
    return comps


def check_calls(edges):
    """Messages for each group of files that call each other in a circle."""
    problems = []
    for comp in strongly_connected(edges):
        if len(comp) < 2:
            continue
        members = set(comp)
        lines = ["these files call each other in a circle: " + ", ".join(comp)]
        for a in comp:
            for b in sorted(edges[a]):
                if b in members:
                    shown = edges[a][b][:3]
                    more = len(edges[a][b]) - len(shown)
                    lines.append("  %s -> %s (%s%s)" % (a, b, ", ".join(shown),
                                                       ", ..." if more > 0 else ""))
        problems.append("\n".join(lines))
    return problems


def build_objects(build, root):
    """The objects of the programs (not of tests) under build, by source name;
    an object whose source is gone (left by an older layout) is skipped."""
    names = {}
    for top in sorted(FOLDER_MAY_INCLUDE):
        for d, _, files in os.walk(os.path.join(build, top)):
            for n in files:
                if n.endswith(".o"):
                    o = os.path.join(d, n)
                    src = os.path.relpath(o, build)[:-2] + ".c"
                    if os.path.exists(os.path.join(root, src)):
                        names[o] = src
    return names


def print_graph(edges):
    """Each file with the files it calls, grouped by folder."""
    for a in sorted(edges, key=lambda f: (os.path.dirname(f), f)):
        callees = sorted(edges[a])
        print("%-28s -> %s" % (a, ", ".join(callees) if callees else "(nothing of ours)"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=".", help="the repository root (for includes)")
    ap.add_argument("--build", default="build", help="the build directory (for objects)")
    ap.add_argument("--objects", nargs="+", help="check calls between these objects only")
    ap.add_argument("--graph", action="store_true", help="print the call graph and exit")
    args = ap.parse_args()

    if args.objects:
        names = {o: os.path.basename(o)[:-2] + ".c" for o in args.objects}
        problems = check_calls(call_graph(args.objects, names))
        what = "%d objects" % len(names)
    else:
        names = build_objects(args.build, args.root)
        if not names:
            print("layers: no objects under %s: build first" % args.build, file=sys.stderr)
            return 1
        edges = call_graph(sorted(names), names)
        if args.graph:
            print_graph(edges)
            return 0
        problems = check_includes(args.root) + check_calls(edges)
        n_edges = sum(len(v) for v in edges.values())
        what = "%d files, %d file-to-file calls" % (len(names), n_edges)
    for p in problems:
        print("layers: " + p, file=sys.stderr)
    if problems:
        print("layers: %d problem(s) in %s" % (len(problems), what), file=sys.stderr)
        return 1
    print("layers: %s; includes go down, no call cycles" % what)
    return 0


if __name__ == "__main__":
    sys.exit(main())
