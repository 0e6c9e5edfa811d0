"""Rich output from Python (the first part of issue 5): matplotlib works
with no set-up — every figure shown with plt.show(), and every figure still
open when a cell ends, appears once as display_data (image/png + text/plain)
and is closed."""
import base64

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import run, stream_text

pytest.importorskip("matplotlib")


def test_figures_inline_through_nbclient(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\n"
                                  "plt.show()\nprint('after show')"),
        nbformat.v4.new_code_cell("fig, axes = plt.subplots(1, 2)\nfig2 = plt.figure()"),
        nbformat.v4.new_code_cell("print(plt.get_fignums())"),
    ]
    NotebookClient(nb, kernel_name="cellgate-python", timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    first = nb.cells[0].outputs
    assert [o.output_type for o in first] == ["display_data", "stream"]  # in order
    png = base64.b64decode(first[0].data["image/png"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert first[0].data["text/plain"].startswith("<Figure size")
    second = [o for o in nb.cells[1].outputs if o.output_type == "display_data"]
    assert len(second) == 2  # both figures left open, each once
    assert "with 2 Axes" in second[0].data["text/plain"]
    assert nb.cells[2].outputs[0].text == "[]\n"  # and closed


def test_matplotlib_is_not_imported_until_used(python_kernel):
    km, kc = python_kernel
    reply, out = run(kc, "import sys\nprint('matplotlib' in sys.modules, "
                         "'numpy' in sys.modules, 'pandas' in sys.modules)")
    assert stream_text(out, "stdout") == "False False False\n"


def test_users_backend_choice_wins(kernel_factory):
    km, kc = kernel_factory("cellgate-python")
    reply, out = run(kc, "import matplotlib\nmatplotlib.use('agg')\n"
                         "import matplotlib.pyplot as plt\nplt.plot([1])\nplt.close('all')\n"
                         "print(matplotlib.get_backend())")
    assert stream_text(out, "stdout") == "agg\n"
    assert not [m for m in out if m["msg_type"] == "display_data"]
