"""Every command's options: each shown once, the same concept under the same flag with the same help
everywhere (densecnn/cli/options.py), ``--out`` with ``--project`` still read in train and eval,
``--name`` checked by eval too, ``--class-names`` parsed the same in every command. In-process
(Typer's CliRunner), no model is built."""

from __future__ import annotations

import re
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from densecnn.cli import options as opt
from densecnn.cli.app import app

runner = CliRunner()
WIDE = {"COLUMNS": "220"}  # not TERMINAL_WIDTH: Typer reads it once per process, at import
# An option's own row: its name in the first column ("│ --name", "│    --name" or "│ *  --name" beside
# required ones), not a wrapped help line of another option that starts with an option's name
ROW = re.compile(r"^│\s{1,4}(?:\*\s+)?(--[a-z][\w-]*)")


def _commands() -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group of the app, with its path (``("train", "segment")``)."""
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        found.append((path, cmd))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            walk(sub, (*path, name))

    walk(get_command(app), ())
    return found


COMMANDS = _commands()
LEAVES = [(path, cmd) for path, cmd in COMMANDS if not getattr(cmd, "commands", None)]


def _options(cmd: Any) -> list[Any]:
    """The options (not arguments) a command shows in its help, ``--help`` excluded."""
    ctx = cmd.make_context(cmd.name or "densecnn", [], resilient_parsing=True)
    return [p for p in cmd.get_params(ctx) if p.opts and p.opts[0].startswith("-") and p.name != "help"]


def _long(param: Any) -> str:
    return next(o for o in param.opts if o.startswith("--"))


def test_every_command_is_walked() -> None:
    paths = {" ".join(path) for path, _ in LEAVES}
    expected = {"detect", "segment", "classify", "models", "data check"}
    tasks = ("detect", "segment", "classify")
    expected |= {f"{group} {task}" for group in ("train", "eval") for task in tasks}
    expected |= {f"weights {name}" for name in ("list", "pull", "verify", "path")}
    assert expected <= paths


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda p: " ".join(p) or "densecnn")
def test_each_option_shown_once_and_flags_take_no_value(path: tuple[str, ...]) -> None:
    cmd = dict(COMMANDS)[path]
    r = runner.invoke(app, [*path, "--help"], env=WIDE)
    assert r.exit_code == 0, r.output
    shown = Counter(m.group(1) for line in r.output.splitlines() if (m := ROW.match(line)))
    visible = [_long(p) for p in _options(cmd) if not p.hidden]
    assert shown == Counter([*visible, "--help"]), r.output
    assert "<bool>" not in r.output  # flags are flags, not options taking true/false
    for p in _options(cmd):  # no flag declared twice within one command
        decls = [*p.opts, *p.secondary_opts]
        others = [d for q in _options(cmd) if q is not p for d in (*q.opts, *q.secondary_opts)]
        assert not set(decls) & set(others), (path, decls)


def test_same_concept_same_flag_and_help_everywhere() -> None:
    flags_of: dict[str, set[tuple[str, ...]]] = {}
    concept_of: dict[str, set[str]] = {}
    for path, cmd in COMMANDS:
        for p in _options(cmd):
            flag = _long(p)
            flags_of.setdefault(p.name, set()).add(tuple(p.opts))
            concept_of.setdefault(flag, set()).add(p.name)
            # declared in the table; the help is the table's, or the table's plus one noted sentence
            assert flag in opt.HELP, f"{' '.join(path)}: {flag} is not declared in densecnn/cli/options.py"
            base = opt.HELP[flag]
            assert p.help == base or p.help.startswith(base + " "), (path, flag, p.help)
    assert {name: flags for name, flags in flags_of.items() if len(flags) > 1} == {}
    assert {flag: names for flag, names in concept_of.items() if len(names) > 1} == {}


def test_out_is_the_name_of_the_run_parent_everywhere() -> None:
    for path, cmd in LEAVES:
        flags = {_long(p) for p in _options(cmd) if not p.hidden}
        if "--name" in flags:
            assert "--out" in flags and "--project" not in flags, path


class _Captured(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, attr: str) -> None:
    """``name`` whose ``attr(cfg)`` raises ``_Captured(cfg)``: the command runs up to the work."""

    def capture(cfg: Any) -> None:
        raise _Captured(cfg)

    monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**{attr: capture}))


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"not read")
    data = tmp_path / "folder"
    data.mkdir()
    return weights, data


def _train_args(data: Path) -> list[str]:
    return ["train", "classify", "--data", str(data)]


def _eval_args(weights: Path, data: Path) -> list[str]:
    return ["eval", "classify", "--weights", str(weights), "--data", str(data)]


@pytest.mark.parametrize("group", ["train", "eval"])
def test_project_still_works_and_out_wins_by_default(
    group: str, files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights, data = files
    _fake_module(monkeypatch, "densecnn.train.classify", "train")
    _fake_module(monkeypatch, "densecnn.eval.classify", "evaluate")
    args = _train_args(data) if group == "train" else _eval_args(weights, data)

    r = runner.invoke(app, args)
    assert isinstance(r.exception, _Captured), r.output
    assert r.exception.value.project == Path("runs") / group
    for flag in ("--out", "--project"):
        r = runner.invoke(app, [*args, flag, str(tmp_path / "p")])
        assert isinstance(r.exception, _Captured), r.output
        assert r.exception.value.project == tmp_path / "p"
    r = runner.invoke(app, [*args, "--out", "a", "--project", "b"])
    assert r.exit_code == 2 and "--project is the old name of --out" in r.output


@pytest.mark.parametrize("name", ["a/b", "..", ""])
def test_eval_checks_name(name: str, files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_module(monkeypatch, "densecnn.eval.classify", "evaluate")
    r = runner.invoke(app, [*_eval_args(*files), "--name", name])
    assert r.exit_code == 2, r.output
    assert "--name must be a plain folder name" in r.output


def _class_names_args(command: str, files: tuple[Path, Path]) -> list[str]:
    weights, data = files
    return {
        "segment": ["segment", str(data / "x.jpg")],
        "train segment": ["train", "segment", "--data", str(data)],
        "eval segment": ["eval", "segment", "--weights", str(weights), "--data", str(data)],
        "data check": ["data", "check", str(data)],
    }[command]


@pytest.mark.parametrize("command", ["segment", "train segment", "eval segment", "data check"])
@pytest.mark.parametrize(
    ("given", "names"),
    [
        (["--class-names", "a,b", "--class-names", "c"], ("a", "b", "c")),
        (["--class-names", "a, b"], ("a", "b")),
        (["--class-names", " a ,b,c "], ("a", "b", "c")),
    ],
)
def test_class_names_parse_the_same_everywhere(
    command: str,
    given: list[str],
    names: tuple[str, ...],
    files: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    split = opt.split_names

    def spy(values: Any) -> tuple[str, ...]:
        raise _Captured(split(values))  # stop there: nothing after the parsing runs

    monkeypatch.setattr(opt, "split_names", spy)
    r = runner.invoke(app, [*_class_names_args(command, files), *given])
    assert isinstance(r.exception, _Captured), r.output
    assert r.exception.value == names


@pytest.mark.parametrize("command", ["segment", "train segment", "eval segment", "data check"])
def test_an_empty_class_name_is_a_usage_error(command: str, files: tuple[Path, Path]) -> None:
    r = runner.invoke(app, [*_class_names_args(command, files), "--class-names", "a,,b"])
    assert r.exit_code == 2, r.output
    assert "--class-names has an empty name" in r.output


def test_stall_timeout_default_is_live_config_s() -> None:
    from densecnn.config import LiveConfig

    detect = dict(COMMANDS)[("detect",)]
    (param,) = [p for p in _options(detect) if p.name == "stall_timeout"]
    assert param.default == LiveConfig.stall_timeout


def test_outputs_list_counts_many_files_of_one_kind(tmp_path: Path) -> None:
    """The summary names a few files and counts many (one overlay per photo of a big folder)."""
    from densecnn.cli.report import describe_outputs

    (tmp_path / "masks").mkdir()
    for i in range(7):
        (tmp_path / f"{i:03d}.jpg").write_bytes(b"x")
        (tmp_path / "masks" / f"{i:03d}.png").write_bytes(b"x")
    for name in ("a.mp4", "b.mp4", "predictions.jsonl", "summary.json", ".densecnn.lock"):
        (tmp_path / name).write_bytes(b"x")
    assert describe_outputs(tmp_path) == [
        "*.jpg (7 files)", "a.mp4", "b.mp4", "masks/ (7 files)", "predictions.jsonl", "summary.json"
    ]  # fmt: skip
