"""Usage errors are one line with exit status 2, in every command; user errors stay exit 1."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pytest
from typer.main import get_command

from latentscope.cli import app, main
from latentscope.store import create_store

COMMANDS = sorted(get_command(app).commands)


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _required(command) -> list[str]:
    """Dummy values for the required parameters of a command (arguments, then options)."""
    args, opts = [], []
    for p in command.params:
        if not p.required:
            continue
        if p.param_type_name == "argument":
            args.append("x.h5")
        else:
            opts += [p.opts[0], "x"]
    return args + opts


def _bad_value(command):
    """An integer option with a lower bound (value below it), else any integer option, else None."""
    ints = [p for p in command.params if p.param_type_name == "option"
            and getattr(getattr(p, "type_descriptor", None), "annotation", None) in (int, Optional[int])]
    bounded = [p for p in ints if getattr(p, "min", None) is not None]
    if bounded:
        p = bounded[0]
        return p, str(int(p.min) - 5), f"must be >= {int(p.min)}"
    if ints:
        return ints[0], "abc", "must be an integer"
    return None


def test_every_command_is_covered():
    assert {"import", "export", "info", "check", "analyze", "sample", "filaments", "evaluate", "encode",
            "train"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_unknown_option_is_one_line_exit_2(capsys, name):
    code, out, err = _run(capsys, name, *_required(get_command(app).commands[name]), "--no-such-option")
    assert code == 2, err
    assert err == f"error: no such option: --no-such-option; see 'latentscope {name} --help'\n", err


@pytest.mark.parametrize("name", COMMANDS)
def test_bad_option_value_is_one_line_exit_2(capsys, name):
    command = get_command(app).commands[name]
    found = _bad_value(command)
    if found is None:
        pytest.skip(f"{name} has no integer option")
    param, value, rule = found
    code, out, err = _run(capsys, name, *_required(command), param.opts[0], value)
    assert code == 2, err
    assert err == f"error: {param.opts[0]} {rule}; got {value}\n", err


@pytest.mark.parametrize("name", COMMANDS)
def test_missing_required_parameter_is_one_line_exit_2(capsys, name):
    command = get_command(app).commands[name]
    if not any(p.required for p in command.params):
        pytest.skip(f"{name} has no required parameter")
    code, out, err = _run(capsys, name)
    assert code == 2 and err.startswith("error: missing ") and err.count("\n") == 1, err


def test_the_readme_example(tmp_path, capsys, rng):
    with create_store(tmp_path / "z.h5", 3) as s:
        s.append(rng.standard_normal((20, 3)))
    code, _, err = _run(capsys, "sample", tmp_path / "z.h5", "--region", "cube", "-n", "-5", "--out", tmp_path / "o")
    assert (code, err) == (2, "error: -n must be >= 1; got -5\n")
    code, _, err = _run(capsys, "sample", tmp_path / "z.h5", "--region", "cube", "--n-samples=0", "--out", tmp_path / "o")
    assert (code, err) == (2, "error: --n-samples must be >= 1; got 0\n")


def test_user_errors_stay_exit_1_and_success_0(tmp_path, capsys):
    code, _, err = _run(capsys, "info", tmp_path / "missing.h5")
    assert code == 1 and err.startswith("error: ") and "no such file" in err and err.count("\n") == 1
    np.save(tmp_path / "z.npy", np.zeros((3, 2)))
    assert _run(capsys, "import", tmp_path / "z.npy", "--out", tmp_path / "z.h5", "--no-progress")[0] == 0
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out.startswith("latentscope ")
    code, out, _ = _run(capsys, "info", "--help")
    assert code == 0 and "STORE" in out
    code, _, err = _run(capsys, "no-such-command")
    assert code == 2 and err == "error: no such command 'no-such-command'; see 'latentscope --help'\n"
