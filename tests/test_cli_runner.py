"""The test harness itself: ``run_cli`` (in this process) gives what ``run_cli_process`` (a real
``python -m densecnn``) gives, byte for byte where the output has no timings, and leaves this
process as it found it; the installed ``densecnn`` script runs."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COCO8, CliRunner, need_data


def _cases() -> list[list[str]]:
    image = str(COCO8 / "val/000000000036.jpg")
    return [
        ["--version"],
        ["models"],
        ["detect"],  # no arguments: the help, exit 2
        ["detect", "--bogus"],  # Typer's usage error, in its panel
        ["detect", image, "--conf", "2"],  # densecnn's usage error
        ["detect", image, "--model", "yolov8n"],  # weights missing offline: exit 3, names the cache
        ["data", "check", "missing"],
    ]


@pytest.mark.parametrize("args", _cases(), ids=lambda a: " ".join(a[:1] + a[2:]) if len(a) > 1 else a[0])
def test_in_process_run_gives_what_a_process_gives(
    args: list[str], run_cli: CliRunner, run_cli_process: CliRunner
) -> None:
    need_data(COCO8)
    inside, outside = run_cli(*args), run_cli_process(*args)
    assert (inside.returncode, inside.stdout, inside.stderr) == (
        outside.returncode,
        outside.stdout,
        outside.stderr,
    )
    assert inside.stdout + inside.stderr, "nothing printed: nothing compared"
    assert "\x1b[" not in inside.stdout + inside.stderr


def test_width_follows_columns_and_state_is_put_back(run_cli: CliRunner, tmp_path: Path) -> None:
    before = (os.getcwd(), dict(os.environ), signal.getsignal(signal.SIGINT), logging.getLogger().handlers[:])
    wide = run_cli("detect", env={"COLUMNS": "200"})
    narrow = run_cli("detect")
    assert wide.returncode == narrow.returncode == 2
    assert max(map(len, (wide.stdout + wide.stderr).splitlines())) == 200
    assert max(map(len, (narrow.stdout + narrow.stderr).splitlines())) == 120
    assert (os.getcwd(), dict(os.environ), signal.getsignal(signal.SIGINT)) == before[:3]
    assert logging.getLogger().handlers == before[3]


def test_the_run_sees_its_folder_and_environment(run_cli: CliRunner, tmp_path: Path) -> None:
    """A relative source is found in ``cwd``; the weight cache named in the message is the test's."""
    (tmp_path / "sub").mkdir()
    r = run_cli("detect", "nothing.jpg", cwd=tmp_path / "sub")
    assert r.returncode == 2 and "nothing.jpg" in r.stderr
    image = need_data(COCO8 / "val/000000000036.jpg")
    r = run_cli(
        "detect", str(image), "--model", "yolov8n", env={"DENSECNN_WEIGHTS_DIR": str(tmp_path / "w2")}
    )
    assert r.returncode == 3 and str(tmp_path / "w2") in r.stderr


def test_an_unhandled_exception_is_a_traceback_and_exit_1(
    run_cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import densecnn.data.check

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom from the test")

    monkeypatch.setattr(densecnn.data.check, "check", boom)
    r = run_cli("data", "check", str(tmp_path))
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "RuntimeError: boom from the test" in r.stderr


def test_the_installed_script_runs(tmp_path: Path) -> None:
    """The ``densecnn`` console script of this environment, as a user runs it (a real process)."""
    script = Path(sys.executable).parent / "densecnn"
    if not script.is_file():
        pytest.skip(f"no installed densecnn script beside {sys.executable}")
    env = {**os.environ, "DENSECNN_OFFLINE": "1", "COLUMNS": "120"}
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("densecnn "), r.stderr
    r = subprocess.run(
        [str(script), "data", "check", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 2 and "no such file or folder" in r.stderr


def test_logging_is_configured_as_in_a_new_process(
    run_cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``configure_logging`` (``logging.basicConfig``) takes effect in the run and writes to its
    stderr, although pytest has handlers on the root logger; they are back afterwards."""
    from types import SimpleNamespace

    import densecnn.data.check
    from densecnn.cli.run import configure_logging

    def logs(*args: object, **kwargs: object) -> SimpleNamespace:
        configure_logging(True)
        logging.getLogger("densecnn.test").info("seen by the run")
        return SimpleNamespace(format="test", summary=[], problems=[])

    monkeypatch.setattr(densecnn.data.check, "check", logs)
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    r = run_cli("data", "check", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stderr == "INFO seen by the run\n"
    assert (root.handlers, root.level) == before


def test_warnings_reach_stderr_as_in_a_new_process(
    run_cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warning of the code under test is printed on the run's stderr (pytest would otherwise
    collect it), once per place, and a DeprecationWarning stays hidden as by Python's defaults."""
    import warnings
    from types import SimpleNamespace

    import densecnn.data.check

    def warns(*args: object, **kwargs: object) -> SimpleNamespace:
        for _ in range(2):
            warnings.warn("careful, from the test", RuntimeWarning, stacklevel=1)
        warnings.warn("old, from the test", DeprecationWarning, stacklevel=1)
        return SimpleNamespace(format="test", summary=[], problems=[])

    monkeypatch.setattr(densecnn.data.check, "check", warns)
    for _ in range(2):  # the second run shows it again: a new process would
        r = run_cli("data", "check", str(tmp_path))
        assert r.returncode == 0, r.stderr
        assert r.stderr.count("RuntimeWarning: careful, from the test") == 1, r.stderr
        assert "old, from the test" not in r.stderr
