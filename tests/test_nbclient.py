"""nbclient runs the example notebook through the cellgate kernel, the way
an agent or `jupyter nbconvert --execute` would."""
import os

import nbformat
from nbclient import NotebookClient

from conftest import ROOT


def outputs_text(cell):
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            parts.append(o.data.get("text/plain", ""))
    return "".join(parts)


def test_example_notebook(tmp_path):
    nb = nbformat.read(os.path.join(ROOT, "examples", "hello.ipynb"), as_version=4)
    NotebookClient(nb, kernel_name="cellgate", timeout=60,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "[2, 3, 5, 7, 11" in outputs_text(code[0])
    assert "'the primes below 50 add up to 328'" in outputs_text(code[1])
    assert "Bash 5." in outputs_text(code[2]) and "- notebooks" in outputs_text(code[2])
    assert "Python read what Bash wrote: [1, 2, 3, 4, 5]" in outputs_text(code[3])
    rich = [o for o in code[4].outputs if o.output_type == "execute_result"]
    assert "text/html" in rich[0].data
    assert [o.name for o in code[4].outputs if o.output_type == "stream"] == ["stderr"]
    assert "wrote from-node.json" in outputs_text(code[5])
    assert 'C read: {"answer":42}' in outputs_text(code[6])
    assert all(c.execution_count == i + 1 for i, c in enumerate(code))


def test_error_stops_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("raise KeyError('missing')"),
                nbformat.v4.new_code_cell("x")]
    client = NotebookClient(nb, kernel_name="cellgate-python", timeout=30,
                            allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    err = nb.cells[1].outputs[0]
    assert err.output_type == "error" and err.ename == "KeyError"
    assert nb.cells[2].outputs[0].data["text/plain"] == "1"
