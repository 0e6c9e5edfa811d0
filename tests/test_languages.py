"""Every language through real kernels: jupyter_kernel_test for each
installed kernelspec with the sample attributes the language supports,
then what the issue asks of compiled languages (a cell is a program,
compile errors, exit statuses, stdin, the build cache) and of sharing one
box across languages with %%magics."""
import os
import queue
import time

import jupyter_kernel_test as jkt
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from conftest import run, stream_text, wait_until
from proctree import descendants, pids_where

INSTALLED = set(KernelSpecManager().find_kernel_specs())


def needs(name):
    return pytest.mark.skipif(f"cellgate-{name}" not in INSTALLED,
                              reason=f"no {name} toolchain on this machine")


# jupyter_kernel_test waits 15 s for a reply; a Kotlin or Java compile on a
# loaded 2-core machine can take longer, and one late reply then cascades
# (the next cells are aborted behind it). Speed is benchmarked, not tested.
EXECUTE_TIMEOUT = 90


def _execute_helper(self, code, timeout=EXECUTE_TIMEOUT, **kw):
    return jkt.KernelTests.execute_helper(self, code, timeout=max(timeout, EXECUTE_TIMEOUT), **kw)


def spec_test(name, **attrs):
    """A jupyter_kernel_test class for kernelspec cellgate-NAME."""
    attrs.setdefault("kernel_name", f"cellgate-{name}")
    attrs.setdefault("execute_helper", _execute_helper)
    cls = type(f"KernelTest_{name}", (jkt.KernelTests,), attrs)
    return needs(name)(cls)


HELLO_C = '#include <stdio.h>\nint main(void) { printf("hello, world\\n"); return 0; }\n'

JavaScript = spec_test(
    "javascript", language_name="javascript", file_extension=".js",
    code_hello_world="console.log('hello, world')",
    code_stderr="console.error('oops')",
    code_generate_error="throw new TypeError('boom')",
    code_execute_result=[{"code": "1 + 2", "result": "3"},
                         {"code": "[1, 2].map(x => x * 2)", "result": "[ 2, 4 ]"}],
    complete_code_samples=["1 + 1", "function f() { return 1 }"],
    incomplete_code_samples=["function f() {", "[1, 2,"],
    invalid_code_samples=["1 +* 2", "}"],
    completion_samples=[{"text": "consol", "matches": {"console"}}],
    code_inspect_sample="Math.max",
)
Ruby = spec_test(
    "ruby", language_name="ruby", file_extension=".rb",
    code_hello_world="puts 'hello, world'",
    code_stderr="$stderr.puts 'oops'",
    code_generate_error="raise ArgumentError, 'boom'",
    code_execute_result=[{"code": "1 + 2", "result": "3"},
                         {"code": "[1, 2].map { |x| x * 2 }", "result": "[2, 4]"}],
    complete_code_samples=["1 + 1", "def f\n  1\nend"],
    incomplete_code_samples=["def f", "[1, 2,"],
    completion_samples=[{"text": "put", "matches": {"putc", "puts"}}],
)
Perl = spec_test(
    "perl", language_name="perl", file_extension=".pl",
    code_hello_world='print "hello, world\\n";',
    code_stderr='print STDERR "oops\\n";',
    code_generate_error="die 'boom';",
    complete_code_samples=["my $x = 1;", "sub f { 1 }"],
    incomplete_code_samples=["sub f {", "my @a = (1, 2,"],
    completion_samples=[{"text": "prin", "matches": {"print", "printf"}}],
)
PHP = spec_test(
    "php", language_name="php", file_extension=".php",
    code_hello_world='echo "hello, world\\n";',
    code_stderr='fwrite(STDERR, "oops\\n");',
    code_generate_error="throw new RuntimeException('boom');",
    code_execute_result=[{"code": "1 + 2", "result": "3"}],
    complete_code_samples=["$x = 1;", "function f() { return 1; }"],
    incomplete_code_samples=["function f() {", "$a = [1, 2,"],
    code_inspect_sample="strlen",
)
C = spec_test(
    "c", language_name="c", file_extension=".c",
    code_hello_world=HELLO_C,
    code_stderr='#include <stdio.h>\nint main(void) { fputs("oops\\n", stderr); return 0; }\n',
    code_generate_error="int main(void) { return 3; }\n",
)
Cpp = spec_test(
    "cpp", language_name="c++", file_extension=".cpp",
    code_hello_world='#include <iostream>\nint main() { std::cout << "hello, world\\n"; }\n',
    code_stderr='#include <iostream>\nint main() { std::cerr << "oops\\n"; }\n',
    code_generate_error="int main() { return 4; }\n",
)
Go = spec_test(
    "go", language_name="go", file_extension=".go",
    code_hello_world='package main\nimport "fmt"\nfunc main() { fmt.Println("hello, world") }\n',
    code_stderr='package main\nimport "os"\nfunc main() { os.Stderr.WriteString("oops\\n") }\n',
    code_generate_error='package main\nimport "os"\nfunc main() { os.Exit(2) }\n',
)
Java = spec_test(
    "java", language_name="java", file_extension=".java",
    code_hello_world='public class Hello { public static void main(String[] a) '
                     '{ System.out.println("hello, world"); } }\n',
    code_stderr='public class Err { public static void main(String[] a) '
                '{ System.err.println("oops"); } }\n',
    code_generate_error='public class Fail { public static void main(String[] a) '
                        '{ System.exit(5); } }\n',
)
Rust = spec_test(
    "rust", language_name="rust", file_extension=".rs",
    code_hello_world='fn main() { println!("hello, world"); }\n',
    code_stderr='fn main() { eprintln!("oops"); }\n',
    code_generate_error="fn main() { std::process::exit(6); }\n",
)
Kotlin = spec_test(
    "kotlin", language_name="kotlin", file_extension=".kt",
    code_hello_world='fun main() { println("hello, world") }\n',
    code_stderr='fun main() { System.err.println("oops") }\n',
    code_generate_error="fun main() { kotlin.system.exitProcess(7) }\n",
)


# ---- state in interpreted languages ------------------------------------------

STATE = {  # (set up, use, expected stdout)
    "javascript": ("let n = 20; function twice(x) { return 2 * x }",
                   "console.log(twice(n) + 2)", "42\n"),
    "ruby": ("n = 20\ndef twice(x) = 2 * x", "puts twice(n) + 2", "42\n"),
    "perl": ("$n = 20; sub twice { 2 * shift }", 'print twice($n) + 2, "\\n";', "42\n"),
    "php": ("$n = 20; function twice($x) { return 2 * $x; }", 'echo twice($n) + 2, "\\n";',
            "42\n"),
}


@pytest.mark.parametrize("lang", sorted(STATE))
def test_interpreted_state_persists(kernel_factory, lang):
    if f"cellgate-{lang}" not in INSTALLED:
        pytest.skip(f"no {lang}")
    km, kc = kernel_factory(f"cellgate-{lang}")
    setup, use, want = STATE[lang]
    reply, out = run(kc, setup)
    assert reply["content"]["status"] == "ok", reply["content"]
    reply, out = run(kc, use)
    assert stream_text(out, "stdout") == want


@needs("javascript")
def test_javascript_await_and_require_from_data(kernel_factory):
    km, kc = kernel_factory("cellgate-javascript")
    reply, out = run(kc, "const fs = require('fs');\n"
                         "fs.mkdirSync('node_modules/greet', {recursive: true});\n"
                         "fs.writeFileSync('node_modules/greet/index.js', "
                         "'module.exports = n => `hi ${n}`');")
    assert reply["content"]["status"] == "ok", reply["content"]
    reply, out = run(kc, "const v = await new Promise(r => setTimeout(() => r(41), 10));\n"
                         "console.log(require('greet')(v + 1))")
    assert stream_text(out, "stdout") == "hi 42\n"


# ---- compiled languages ------------------------------------------------------

@needs("c")
def test_c_compile_error_is_one_error_with_the_diagnostic(kernel_factory):
    km, kc = kernel_factory("cellgate-c")
    reply, out = run(kc, "int main(void) { return undefined_name; }\n")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "CompileError"
    assert [m["msg_type"] for m in out] == ["error"]
    assert "undefined_name" in "\n".join(out[0]["content"]["traceback"])


@needs("c")
def test_c_exit_status_and_signal(kernel_factory):
    km, kc = kernel_factory("cellgate-c")
    reply, out = run(kc, '#include <stdio.h>\nint main(void) { puts("before"); return 3; }\n')
    assert stream_text(out, "stdout") == "before\n"
    assert "exit status 3" in reply["content"]["evalue"]
    reply, out = run(kc, "int main(void) { int *p = 0; return *p; }\n")
    assert "signal 11" in reply["content"]["evalue"] or "SIGSEGV" in reply["content"]["evalue"]


@needs("c")
def test_c_directive_and_build_cache(kernel_factory):
    km, kc = kernel_factory("cellgate-c")
    code = '//% -O0 -DANSWER=42\n#include <stdio.h>\nint main(void) { printf("%d\\n", ANSWER); }\n'
    t0 = time.monotonic()
    reply, out = run(kc, code)
    first = time.monotonic() - t0
    assert stream_text(out, "stdout") == "42\n"
    t0 = time.monotonic()
    reply, out = run(kc, code)
    again = time.monotonic() - t0
    assert stream_text(out, "stdout") == "42\n"
    # Cached: the second run does not compile. gcc takes tens of ms at least.
    assert again < first, (first, again)


@needs("c")
def test_c_stdin(kernel_factory):
    km, kc = kernel_factory("cellgate-c")
    code = ('#include <stdio.h>\nint main(void) { int a = 0, b = 0;\n'
            '  if (scanf("%d", &a) != 1) { puts("eof"); return 0; }\n'
            '  scanf("%d", &b); printf("sum %d\\n", a + b); return 0; }\n')
    reply, out = run(kc, code, stdin=["20", "22"])
    assert len([m for m in out if m["msg_type"] == "input_request"]) == 2
    assert "sum 42" in stream_text(out, "stdout")
    reply, out = run(kc, code)  # no allow_stdin: end of file
    assert stream_text(out, "stdout") == "eof\n"


@needs("c")
def test_c_interrupt(kernel_factory):
    km, kc = kernel_factory("cellgate-c")
    msg_id = kc.execute("int main(void) { for (;;) ; }\n")
    time.sleep(1.0)
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=20)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    reply, out = run(kc, HELLO_C)
    assert stream_text(out, "stdout") == "hello, world\n"


def kept_compiler(km):
    """The pid of the kept compiler JVM among a kernel's processes, or None."""
    kept = pids_where(descendants(km.provisioner.process.pid), lambda argv: argv[0] ==
                      b"/usr/bin/java" and argv[-1].endswith(b"/CellgateCompiler.java"))
    return kept[0] if kept else None


@needs("java")
def test_java_keeps_its_compiler_in_the_box(kernel_factory):
    km, kc = kernel_factory("cellgate-java")
    cell = ('public class K{n} {{ public static void main(String[] a) '
            '{{ System.out.println("k{n}"); }} }}\n')
    reply, out = run(kc, cell.format(n=0))
    assert stream_text(out, "stdout") == "k0\n"
    assert wait_until(lambda: kept_compiler(km), timeout=30)  # started once idle
    pid = kept_compiler(km)
    for n in (1, 2):  # new code: compiled, by the kept JVM
        reply, out = run(kc, cell.format(n=n))
        assert stream_text(out, "stdout") == f"k{n}\n"
    assert kept_compiler(km) == pid
    # It is the box's: in the box's pid namespace, as the kernel's driver is.
    driver = min(p for p in descendants(km.provisioner.process.pid)
                 if os.readlink(f"/proc/{p}/exe") == "/usr/bin/python3.11")
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{driver}/ns/pid") \
        != os.readlink("/proc/self/ns/pid")


@pytest.mark.parametrize("lang,code", [
    ("c", '#include <stdio.h>\nint main(void) {\n'
          '  for (int i = 0; i < 2000; i++) printf("line %d\\n", i);\n'
          '  fputs("bye\\n", stderr);\n  return 3;\n}\n'),
    ("go", 'package main\nimport ("fmt"; "os")\nfunc main() {\n'
           '  for i := 0; i < 2000; i++ { fmt.Printf("line %d\\n", i) }\n'
           '  fmt.Fprintln(os.Stderr, "bye")\n  os.Exit(3)\n}\n'),
], ids=["c", "go"])
def test_cell_sent_at_launch_comes_back_whole(lang, code):
    # As an agent does: launch a kernel and send the cell at once, without
    # waiting for ready. The cell waits for the box and the driver's start;
    # all its output, the error and the reply come, in order.
    if f"cellgate-{lang}" not in KernelSpecManager().find_kernel_specs():
        pytest.skip(f"cellgate-{lang} is not installed")
    km = KernelManager(kernel_name=f"cellgate-{lang}")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        reply, out = run(kc, code, timeout=120)
        assert stream_text(out, "stdout") == "".join(f"line {i}\n" for i in range(2000))
        assert stream_text(out, "stderr") == "bye\n"
        assert reply["content"]["status"] == "error"
        assert reply["content"]["evalue"] == "exit status 3"
        assert out[-1]["msg_type"] == "error"  # after every stream output
        reply, out = run(kc, code, timeout=120)  # built already: the same again
        assert stream_text(out, "stdout").count("\n") == 2000
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# ---- one box, many languages ---------------------------------------------------

def test_magics_share_the_box(kernel_factory):
    langs = [l for l in ("javascript", "ruby", "perl", "php", "c")
             if f"cellgate-{l}" in INSTALLED]
    km, kc = kernel_factory("cellgate")
    run(kc, "open('shared.txt', 'w').write('from python')")
    readers = {
        "javascript": "%%javascript\nconsole.log(require('fs').readFileSync('shared.txt', 'utf8'))",
        "ruby": "%%ruby\nputs File.read('shared.txt')",
        "perl": "%%perl\nopen my $f, '<', 'shared.txt'; print <$f>, \"\\n\";",
        "php": "%%php\necho file_get_contents('shared.txt'), \"\\n\";",
        "c": '%%c\n#include <stdio.h>\nint main(void) { char b[64] = {0}; FILE *f = '
             'fopen("shared.txt", "r"); fgets(b, sizeof b, f); puts(b); }\n',
    }
    for lang in langs:
        reply, out = run(kc, readers[lang], timeout=120)
        assert reply["content"]["status"] == "ok", (lang, reply["content"])
        assert "from python" in stream_text(out, "stdout"), lang


# ---- interrupt and stdin in every interpreted language ---------------------------

BUSY = {  # (a variable to keep, a busy loop, reading its value back)
    "javascript": ("let kept = 7", "while (true) {}", "console.log(kept)"),
    "ruby": ("kept = 7", "loop { }", "puts kept"),
    "perl": ("$kept = 7;", "1 while 1;", 'print "$kept\\n";'),
    "php": ("$kept = 7;", "while (true) {}", 'echo "$kept\\n";'),
}


@pytest.mark.parametrize("lang", sorted(BUSY))
def test_interrupt_keeps_state(kernel_factory, lang):
    if f"cellgate-{lang}" not in INSTALLED:
        pytest.skip(f"no {lang}")
    km, kc = kernel_factory(f"cellgate-{lang}")
    setup, busy, check = BUSY[lang]
    run(kc, setup)
    msg_id = kc.execute(busy)
    time.sleep(0.5)
    t0 = time.monotonic()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=20)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["status"] == "error"
    assert time.monotonic() - t0 < 2.0
    reply, out = run(kc, check)
    assert stream_text(out, "stdout") == "7\n"


def test_bash_interrupt_publishes_no_empty_stderr(kernel_factory):
    """Interactive bash ends a line it drops on SIGINT with a newline on
    stderr; the cell shows only what it wrote, then its error."""
    km, kc = kernel_factory("cellgate-bash")
    for code, stdout, stderr in [("sleep 30", "", ""),
                                 ("echo out; echo err >&2; sleep 30", "out\n", "err\n")]:
        msg_id = kc.execute(code)
        time.sleep(0.5)
        km.interrupt_kernel()
        outputs = []
        while True:
            msg = kc.get_iopub_msg(timeout=20)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            if msg["msg_type"] in ("stream", "error"):
                outputs.append(msg)
        assert [m["content"]["text"] for m in outputs
                if m["msg_type"] == "stream" and not m["content"]["text"].strip()] == []
        assert (stream_text(outputs, "stdout"), stream_text(outputs, "stderr")) == (stdout, stderr)
        assert outputs[-1]["msg_type"] == "error"
        assert outputs[-1]["content"]["evalue"] == "exit status 130 (interrupted)"
    reply, out = run(kc, "echo after >&2")
    assert stream_text(out, "stderr") == "after\n"


READ = {  # a cell that reads one line and prints it back
    "javascript": "const name = await input('who? '); console.log('hi ' + name)",
    "ruby": "print 'who? '\nname = gets.chomp\nputs 'hi ' + name",
    "perl": 'my $name = <STDIN>; chomp $name; print "hi $name\\n";',
    "php": '$name = readline("who? "); echo "hi $name\\n";',
}


@pytest.mark.parametrize("lang", sorted(READ))
def test_stdin_through_the_kernel(kernel_factory, lang):
    if f"cellgate-{lang}" not in INSTALLED:
        pytest.skip(f"no {lang}")
    km, kc = kernel_factory(f"cellgate-{lang}")
    reply, out = run(kc, READ[lang], stdin=["ada"])
    assert len([m for m in out if m["msg_type"] == "input_request"]) == 1
    assert "hi ada" in stream_text(out, "stdout")
    reply, out = run(kc, READ[lang])  # without allow_stdin: a clear error
    assert reply["content"]["status"] == "error"


# ---- a cell that ignores the interrupt: a second one ends its runtime -------------

STUBBORN = {  # (a variable, a cell that keeps running through SIGINT)
    "python": ("kept = 7", "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n"
               "    except KeyboardInterrupt:\n        pass"),
    # a busy loop after an await runs outside vm's breakOnSigint
    "javascript": ("let kept = 7", "await new Promise(r => setTimeout(r, 10)); while (true) {}"),
}


@pytest.mark.parametrize("lang", sorted(STUBBORN))
def test_second_interrupt_ends_a_stubborn_cell(kernel_factory, lang):
    if f"cellgate-{lang}" not in INSTALLED:
        pytest.skip(f"no {lang}")
    km, kc = kernel_factory(f"cellgate-{lang}")
    setup, stubborn = STUBBORN[lang]
    run(kc, setup)
    msg_id = kc.execute(stubborn)
    time.sleep(0.5)
    km.interrupt_kernel()
    # still running: after a second the cell says how to end it
    deadline, note = time.monotonic() + 10, None
    while note is None and time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=10)
        if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream"
                and "interrupt again" in msg["content"]["text"]):
            note = msg["content"]["text"]
    assert note and msg["content"]["name"] == "stderr" and f"end the {lang} runtime" in note
    with pytest.raises(queue.Empty):
        kc.get_shell_msg(timeout=0.2)  # the first interrupt did not end it
    t0 = time.monotonic()
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=20)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert time.monotonic() - t0 < 1.0
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "RuntimeExited"
    assert "second interrupt" in reply["content"]["evalue"]
    # the kernel serves on, with a fresh runtime that says its state is gone
    reply, out = run(kc, "1 + 1")
    assert reply["content"]["status"] == "ok"
    assert "fresh one" in stream_text(out, "stderr")


def test_one_interrupt_never_kills(kernel_factory):
    """An interrupt the cell obeys late (it cleans up for 1.5 s) costs no state."""
    km, kc = kernel_factory("cellgate-python")
    run(kc, "kept = 7")
    msg_id = kc.execute("import time\ntry:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n"
                        "    time.sleep(1.5)\n    print('cleaned up')")
    time.sleep(0.5)
    km.interrupt_kernel()
    reply = kc.get_shell_msg(timeout=20)
    assert reply["parent_header"]["msg_id"] == msg_id and reply["content"]["status"] == "ok"
    reply, out = run(kc, "print(kept)")
    assert stream_text(out, "stdout") == "7\n"
