"""The Jupyter protocol as jupyter_kernel_test (Debian's
python3-jupyter-kernel-test) checks it, for every cellgate kernelspec, with
every sample attribute the language supports."""
import unittest

import jupyter_kernel_test as jkt


class CellgatePython(jkt.KernelTests):
    kernel_name = "cellgate-python"
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('oops', file=sys.stderr)"
    completion_samples = [
        {"text": "zi", "matches": {"zip"}},
        {"text": "pri", "matches": {"print"}},
    ]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n    return x*2\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):", "if True:", "x = (1,"]
    invalid_code_samples = ["1 + * 2", "x = )"]
    code_page_something = "print?"
    code_generate_error = "raise ValueError('boom')"
    code_execute_result = [
        {"code": "1+2+3", "result": "6"},
        {"code": "[n*n for n in range(4)]", "result": "[0, 1, 4, 9]"},
        {"code": "class H:\n    def _repr_html_(self): return '<b>hi</b>'\nH()",
         "mime": "text/html", "result": "<b>hi</b>"},
    ]
    code_display_data = [
        {"code": "class H:\n    def _repr_html_(self): return '<i>x</i>'\ndisplay(H())",
         "mime": "text/html"},
    ]
    code_history_pattern = "1?2*"
    supported_history_operations = ("tail", "range", "search")
    code_inspect_sample = "print"
    code_clear_output = "import cellgate; cellgate.clear_output()"


class CellgateBash(jkt.KernelTests):
    kernel_name = "cellgate-bash"
    language_name = "bash"
    file_extension = ".sh"
    code_hello_world = "echo 'hello, world'"
    code_stderr = "echo oops >&2"
    completion_samples = [{"text": "ech", "matches": {"echo"}}]
    complete_code_samples = ["echo hi", "if true; then echo 1; fi", "f() { echo x; }"]
    incomplete_code_samples = ["if true; then", "echo \"abc", "for i in 1 2; do",
                               "cat <<EOF\nx", "f() {"]
    invalid_code_samples = ["fi", "done done"]
    code_generate_error = "false"
    code_inspect_sample = "cd"


class Cellgate(CellgatePython):
    """`cellgate`: Python, with %%bash (and every language) as a cell magic."""
    kernel_name = "cellgate"
    code_hello_world = "%%bash\necho 'hello, world'"
    code_stderr = "%%bash\necho oops >&2"


if __name__ == "__main__":
    unittest.main()
