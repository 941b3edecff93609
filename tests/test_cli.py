"""The `eggroll-np` command table: every subcommand is listed, built and reachable."""

from __future__ import annotations

import importlib
import json
import platform

import numpy as np
import pytest

import eggroll_np
from eggroll_np import _ext, cli


def test_every_command_of_the_table_is_a_subcommand(capsys):
    assert set(cli.COMMANDS) == {"info", "train", "bench", "gpu-check"}
    for module in cli.COMMANDS.values():
        mod = importlib.import_module(module)
        assert isinstance(mod.HELP, str)
        assert callable(mod.add_arguments)
        assert callable(mod.run)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_info_json_through_the_table(capsys):
    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["eggroll_np"] == eggroll_np.__version__
    assert info["python"] == platform.python_version()
    assert info["numpy"] == np.__version__
    assert info["core_extension"] is (_ext.core is not None)
    assert info["cuda_extension"] is (_ext.cuda is not None)


def test_bench_rejects_a_bad_repeat_count(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--repeats", "0"])
    assert exc.value.code == 2
    assert "--repeats must be an integer >= 1" in capsys.readouterr().err


def test_bench_rejects_negative_threads_and_knows_cnn(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--threads", "-1"])
    assert exc.value.code == 2
    assert "--threads must be an integer >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--workload", "cnnx"])
    assert "cnn" in capsys.readouterr().err  # the choices name the cnn workload
