"""Many `bert-jax COMMAND` invocations in one subprocess (one JAX start-up,
one import of the command), each with its own stdin, stdout, stderr and exit
code. Commands that define the same absl flag (`--checkpoint`) cannot share
one pytest process, hence the subprocess."""

import json
import os
import subprocess
import sys

_DRIVER = r"""
import contextlib, io, json, sys
from absl import flags
from bert_jax import cli
command, cases = sys.argv[1], json.loads(sys.argv[2])
results = {}
for name, (args, stdin) in cases.items():
    flags.FLAGS.unparse_flags()
    out, err = io.StringIO(), io.StringIO()
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8")), encoding="utf-8")
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.run(["bert-jax", command, *args])
        except SystemExit as e:
            code = e.code or 0
    results[name] = {"code": code, "out": out.getvalue(), "err": err.getvalue()}
print("RESULTS " + json.dumps(results))
"""


def run_cases(command: str, cases: dict[str, tuple[list[str], str]]) -> dict[str, dict]:
    """{name: {"code", "out", "err"}} of `bert-jax COMMAND ARGS < STDIN` for each
    case `name: (args, stdin)`."""
    proc = subprocess.run([sys.executable, "-c", _DRIVER, command, json.dumps(cases)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULTS ")]
    assert line, proc.stderr[-3000:]
    return json.loads(line[-1][len("RESULTS "):])


def one_error_line(result: dict) -> str:
    """The one error line a bad input gives, after checking the exit status and that nothing was printed."""
    assert result["code"] == 2, result
    assert result["out"] == ""
    lines = [x for x in result["err"].splitlines() if x.strip()]
    assert len(lines) == 1, lines
    return lines[0]
