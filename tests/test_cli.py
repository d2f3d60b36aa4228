"""The CLI contract: bad input is one clear line and exit 2, with nothing written."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest

from agent.cli import label_command, main
from agent.settings import Settings


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return tmp_path


def run_cli(args: list[str], capsys) -> tuple[int, list[str]]:
    code = main(args)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, lines


def assert_refused(workdir: Path, code: int, lines: list[str], fragment: str) -> None:
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and fragment in lines[0]
    assert not (workdir / "out").exists()
    assert not (workdir / ".autoannotator").exists()


def label_args(data: Path, *extra: str) -> list[str]:
    return ["label tweets for toxicity", "--data", str(data), "--out", "out", "--offline", *extra]


@pytest.mark.parametrize(
    ("content", "extra", "fragment"),
    [
        (None, [], "no such file"),
        (b"", [], "the file is empty"),
        (b"id,text\n", [], "no data rows"),
        (b"id,text\n1,hello\n", ["--text-column", "tweet"], "no column 'tweet'"),
        (b"id,text\n1,caf\xe9\n", [], "not valid UTF-8"),
        (b"id,text\n1,a,b\n", [], "line 2 has 3 fields"),
    ],
    ids=["missing", "empty", "header-only", "unknown-column", "undecodable", "ragged"],
)
def test_bad_data_exits_2_with_one_line_and_writes_nothing(
    workdir, capsys, content, extra, fragment
):
    data = workdir / "tweets.csv"
    if content is not None:
        data.write_bytes(content)
    code, lines = run_cli(label_args(data, *extra), capsys)
    assert_refused(workdir, code, lines, fragment)


def test_unknown_model_path_exits_2(workdir, capsys):
    data = workdir / "tweets.csv"
    data.write_text("id,text\n1,hello\n")
    code, lines = run_cli(label_args(data, "--model", "./no/such/model"), capsys)
    assert_refused(workdir, code, lines, "--model ./no/such/model: no such folder")


def test_folder_that_is_not_a_model_exits_2(workdir, capsys):
    data = workdir / "tweets.csv"
    data.write_text("id,text\n1,hello\n")
    (workdir / "empty-model").mkdir()
    code, lines = run_cli(label_args(data, "--model", "empty-model"), capsys)
    assert_refused(workdir, code, lines, "not a model folder (no config.json)")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--min-agreement", "1.5"], "--min-agreement: must be in (0, 1]"),
        (["--labels", "toxic"], "--labels: at least two labels are needed"),
        (["--labels", "toxic, fine,toxic"], "--labels: each label once: 'toxic' given twice"),
    ],
    ids=["out-of-range", "one-label", "label-twice"],
)
def test_invalid_flag_value_exits_2(workdir, capsys, extra, fragment):
    data = workdir / "tweets.csv"
    data.write_text("id,text\n1,hello\n")
    code, lines = run_cli(label_args(data, *extra), capsys)
    assert_refused(workdir, code, lines, fragment)


def test_unknown_option_is_a_usage_error(workdir, capsys):
    code, lines = run_cli(["label", "x", "--no-such-flag"], capsys)
    assert code == 2 and lines == ["error: No such option: --no-such-flag"]


def test_task_text_with_no_known_family_needs_labels_offline(workdir, capsys):
    data = workdir / "notes.csv"
    data.write_text("id,text\n1,hello\n")
    code, lines = run_cli(
        ["sort these notes", "--data", str(data), "--out", "out", "--offline"], capsys
    )
    assert code == 2
    assert "pass --labels a,b,c" in lines[-1]
    assert not (workdir / "out").exists()


@pytest.mark.slow
def test_model_whose_labels_cannot_be_mapped_is_rejected_with_its_reason(
    workdir, capsys, opaque_voter
):
    data = workdir / "tweets.csv"
    data.write_text("id,text\n1,hello\n")
    code, lines = run_cli(
        label_args(data, "--model", str(opaque_voter), "--sandbox", "none"), capsys
    )
    assert code == 2
    assert "cannot be used: its labels (LABEL_0, LABEL_1) are opaque" in lines[-1]
    assert not (workdir / "out").exists()


def test_help_and_version_exit_0(capsys):
    assert main(["--help"]) == 0
    assert "label" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("autoannotator-agent ")


SETTING_OF_FLAG = {"pilot_verify": "pilot_verify_rows"}
"""The ``label`` command's parameters whose setting has another name."""


def _bracketed_defaults():
    """(parameter, default the help shows) for each ``label`` option whose help ends in a
    plain ``[number]`` or ``[on]``/``[off]``."""
    hints = typing.get_type_hints(label_command, include_extras=True)
    for name in inspect.signature(label_command).parameters:
        extras = getattr(hints[name], "__metadata__", ())
        for info in extras:
            found = re.search(r"\[([0-9.]+|on|off)\]$", getattr(info, "help", None) or "")
            if found:
                yield name, found.group(1)


def test_the_defaults_the_help_shows_are_the_settings_defaults():
    shown = dict(_bracketed_defaults())
    assert len(shown) >= 10, shown
    fields = Settings.model_fields
    for name, text in shown.items():
        default = fields[SETTING_OF_FLAG.get(name, name)].default
        if text in ("on", "off"):
            assert default is (text == "on"), (name, text, default)
        else:
            assert float(text) == float(default), (name, text, default)
