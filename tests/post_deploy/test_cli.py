"""``python -m post_deploy``: the subcommands, the exit-code contract in ``--help``, and how an
exception that escapes a step becomes one line and an exit code."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, NoCredentialsError
from kubernetes.client.rest import ApiException

from post_deploy import cli
from post_deploy.common import StepError
from post_deploy.exit_codes import EXIT_CODE_HELP, INTERRUPTED, ExitCode
from post_deploy.outputs import OutputsError
from post_deploy.teardown import STEP_MEANINGS

REPO = Path(__file__).resolve().parents[2]
SUBCOMMANDS = [
    "preflight",
    "canary",
    "kubeconfig",
    "wait-nodes",
    "label-gpus",
    "check",
    "submit",
    "run",
    "teardown",
    "token",
]


def test_every_step_is_a_subcommand_in_order():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(subparsers.choices) == SUBCOMMANDS


def test_top_level_help_lists_every_step_and_every_exit_code(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert f"\n    {name}" in out
    for code in ExitCode:
        assert f"{int(code):>3}  {EXIT_CODE_HELP[code]}" in out
    assert "100+" in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help_with_the_exit_codes(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m post_deploy {name}")
    assert "exit codes" in out and "130  interrupted" in out  # teardown documents its own per-step codes


def test_every_exit_code_is_documented():
    assert set(EXIT_CODE_HELP) == set(ExitCode)


def test_bad_arguments_exit_with_the_usage_code(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["submit"])  # TASK.yaml is required
    assert exit_.value.code == ExitCode.USAGE
    assert "the following arguments are required: TASK.yaml" in capsys.readouterr().err


def test_python_dash_m_entry_point_runs_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "post_deploy", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "exit codes:" in proc.stdout


def test_token_fast_path_does_not_import_kubernetes_or_skypilot():
    """kubectl runs the exec plugin before every call: it must not pay for those imports."""
    code = (
        "import sys\n"
        "from post_deploy.cli import main\n"
        "try:\n"
        "    main(['token', '--cluster-name', 'x', '--region', 'us-west-2'])\n"
        "finally:\n"
        "    print(sorted(m for m in ('kubernetes', 'sky', 'post_deploy.submit') if m in sys.modules),"
        " file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        },
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["kind"] == "ExecCredential"
    assert proc.stderr.strip().splitlines()[-1] == "[]"


# --- exceptions that escape a step --------------------------------------------------------------------


@pytest.fixture
def raising_step(monkeypatch):
    """A step module whose ``run`` raises what the test puts in ``exc``; the CLI under test is
    unchanged, it just has one more subcommand to dispatch to."""
    module = types.ModuleType("tests_raising_step")
    module.exc = RuntimeError("boom")

    def register(subparsers):
        parser = subparsers.add_parser("explode")
        parser.add_argument("--json", action="store_true")
        parser.set_defaults(func=lambda args: (_ for _ in ()).throw(module.exc))

    module.register = register
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(cli, "STEP_MODULES", (*cli.STEP_MODULES, module.__name__))
    return module


def test_unexpected_exception_is_one_line_and_exit_code_1(raising_step, capsys):
    raising_step.exc = KeyError("spec")
    assert cli.main(["explode"]) == ExitCode.UNEXPECTED
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unexpected KeyError: 'spec'", "(rerun with --debug for the traceback)"]


def test_debug_prints_the_traceback(raising_step, capsys):
    raising_step.exc = KeyError("spec")
    assert cli.main(["--debug", "explode"]) == ExitCode.UNEXPECTED
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError: 'spec'" in err


def test_json_failure_summary_is_printed_on_stdout(raising_step, capsys):
    raising_step.exc = StepError(ExitCode.NODES_TIMEOUT, "2 of 4 nodes Ready after 3600 s")
    assert cli.main(["explode", "--json"]) == ExitCode.NODES_TIMEOUT
    assert json.loads(capsys.readouterr().out) == {
        "step": "explode",
        "ok": False,
        "exit_code": 5,
        "error": "2 of 4 nodes Ready after 3600 s",
    }


def test_interrupt_exits_130(raising_step, capsys):
    raising_step.exc = KeyboardInterrupt()
    assert cli.main(["explode"]) == 130


@pytest.mark.parametrize(
    "exc, code, message",
    [
        (StepError(ExitCode.TASK_INVALID, "x.yaml: bad"), ExitCode.TASK_INVALID, "x.yaml: bad"),
        (OutputsError("missing stack output(s) Region"), ExitCode.USAGE, "missing stack output(s) Region"),
        (
            ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "DescribeCluster"),
            ExitCode.AWS_API,
            "AWS DescribeCluster: AccessDeniedException: not allowed",
        ),
        (NoCredentialsError(), ExitCode.AWS_API, "AWS: Unable to locate credentials"),
        (ApiException(status=403, reason="Forbidden"), ExitCode.KUBERNETES_API, "Kubernetes API: 403 Forbidden"),
        (ValueError("first line\nsecond line"), ExitCode.UNEXPECTED, "unexpected ValueError: first line"),
    ],
)
def test_escaped_exceptions_map_to_their_exit_code(exc, code, message):
    assert cli.classify(exc) == (code, message)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_exit_code_a_help_lists_comes_from_the_one_table(name, capsys):
    with pytest.raises(SystemExit):
        cli.main([name, "--help"])
    block = capsys.readouterr().out.split("exit codes:", 1)[1]
    listed = [int(m) for m in re.findall(r"^\s+(\d+)\s{2}", block, flags=re.MULTILINE)]
    assert listed and set(listed) <= {int(c) for c in ExitCode} | {INTERRUPTED}
    meanings = {int(c): text for c, text in EXIT_CODE_HELP.items()}
    if name == "teardown":  # one code per step, worded for its steps
        meanings = {int(c): text for c, text in STEP_MEANINGS.items()}
    for code in listed:
        if code != INTERRUPTED:
            assert f"{code:>3}  {meanings[code]}" in block
