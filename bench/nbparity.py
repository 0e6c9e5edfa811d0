#!/usr/bin/python3
"""How many cells of real notebooks give ipykernel's outputs under cellgate.

    nbparity.py NOTEBOOK.ipynb... [--kernel cellgate-python] [--reference python3]
                [--timeout S] [--show N] [--json]

Each notebook's code cells run in order, in a fresh kernel per notebook and
a fresh working directory, under the reference kernel twice and under the
kernel measured once.  Outputs are compared as tests/test_ipython_parity.py
compares them (message type, mime types, text; addresses, timings, paths,
ANSI colour and stream splitting normalised).  Cells whose outputs differ
between the two reference runs (random numbers, times, ids) are left out;
the rest count as same or different, and the differing cells are listed.
Notebooks are inputs only: fetch them yourself, keep them out of the repo.
Use Debian's /usr/bin/python3 (it has jupyter_client and ipykernel).
"""
import argparse
import json
import os
import sys

import nbformat

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from test_ipython_parity import run_notebook  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="+")
    ap.add_argument("--kernel", default="cellgate-python")
    ap.add_argument("--reference", default="python3")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--show", type=int, default=400, help="characters of a differing output shown")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    total = {"cells": 0, "unstable": 0, "same": 0, "different": 0}
    report = []
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        cells = [c.source for c in nb.cells if c.cell_type == "code" and c.source.strip()]
        ref1, ref2, got = (run_notebook(k, cells, timeout=args.timeout, timeouts=True)
                           for k in (args.reference, args.reference, args.kernel))
        counts = {"cells": len(cells), "unstable": 0, "same": 0, "different": 0}
        diffs = []
        for i, code in enumerate(cells):
            if i >= min(len(ref1), len(ref2), len(got)):
                counts["unstable"] += 1
                continue
            if ref1[i] != ref2[i]:
                counts["unstable"] += 1
            elif got[i] == ref1[i]:
                counts["same"] += 1
            else:
                counts["different"] += 1
                diffs.append({"cell": i, "code": code[:200], "reference": repr(ref1[i])[:args.show],
                              "kernel": repr(got[i])[:args.show]})
        for k in total:
            total[k] += counts[k]
        report.append({"notebook": os.path.basename(path), **counts, "differences": diffs})
        if not args.json:
            print("%-50s cells %3d  unstable %3d  same %3d  different %3d" % (
                os.path.basename(path)[:50], counts["cells"], counts["unstable"],
                counts["same"], counts["different"]), flush=True)
            for d in diffs:
                print("   cell %d: %r\n     %s: %s\n     %s: %s" % (
                    d["cell"], d["code"][:100], args.reference, d["reference"],
                    args.kernel, d["kernel"]), flush=True)
    compared = total["same"] + total["different"]
    share = 100.0 * total["same"] / compared if compared else 0.0
    if args.json:
        print(json.dumps({"total": total, "same_percent": share, "notebooks": report}, indent=1))
    else:
        print("total: %d cells, %d unstable under %s, %d compared: %d same (%.1f%%), %d different"
              % (total["cells"], total["unstable"], args.reference, compared, total["same"],
                 share, total["different"]))


if __name__ == "__main__":
    main()
