"""What a caller gets back from a normal run, on every backend (the contract of Sandbox.run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbox_helpers import ESCAPES, escape

from sandbox import Limits, Sandbox

MiB = 1024**2


def test_run_reports_stdout_files_and_streams_stderr(isolated: Sandbox, workdir: Path) -> None:
    (workdir / "input.csv").write_text("id,text\n1,great\n")
    streamed: list[str] = []

    def on_output(line: str) -> None:
        streamed.append(line)
        if line == "ready":  # the script waits for this file: lines must arrive live
            (workdir / "go").touch()

    result = isolated.run(
        escape(isolated, "handshake.py"),
        workdir,
        [ESCAPES],
        limits=Limits(wall_seconds=60),
        on_output=on_output,
    )
    assert result.ok, result.stderr
    assert result.returncode == 0 and result.stdout == "done\n"
    assert streamed == ["ready"] and result.stderr == "ready\n"
    assert result.output_files == ("go", "input.csv", "out/nested/labels.csv")
    assert (workdir / "out/nested/labels.csv").read_text() == "id,label\n1,positive\n"


def test_failing_command_is_a_result_not_an_exception(isolated: Sandbox, workdir: Path) -> None:
    code = "import sys; print('bad spec', file=sys.stderr); sys.exit(3)"
    result = isolated.run([isolated.python, "-c", code], workdir)
    assert result.returncode == 3 and not result.ok
    assert result.stderr == "bad spec\n"
    assert not result.timed_out and not result.killed_for_memory


def test_callback_error_is_raised_after_the_run(isolated: Sandbox, workdir: Path) -> None:
    def broken_display(line: str) -> None:
        raise RuntimeError(f"display failed on {line!r}")

    code = "import sys; print('progress 1', file=sys.stderr); open('done', 'w')"
    with pytest.raises(RuntimeError, match="progress 1"):
        isolated.run([isolated.python, "-c", code], workdir, on_output=broken_display)
    assert (workdir / "done").exists()  # the command itself ran to the end


def test_file_size_limit(isolated: Sandbox, workdir: Path) -> None:
    code = "open('big.bin', 'wb').write(bytes(4 * 1024 * 1024))"
    limits = Limits(wall_seconds=60, file_size_bytes=1 * MiB)
    result = isolated.run([isolated.python, "-c", code], workdir, limits=limits)
    assert result.returncode != 0
    assert (workdir / "big.bin").stat().st_size <= 1 * MiB


def test_read_only_input_inside_the_work_folder(isolated: Sandbox, workdir: Path) -> None:
    """An input file kept in the work folder (fit_heads' examples) is readable, not writable."""
    inputs = workdir / "inputs"
    inputs.mkdir()
    examples = inputs / "examples.jsonl"
    examples.write_text('{"text": "great"}\n')
    code = (
        "import sys\n"
        f"print(open({str(examples)!r}).read().strip())\n"
        "try:\n"
        f"    open({str(examples)!r}, 'a').write('tampered')\n"
        "except OSError:\n"
        "    print('read-only')\n"
        "open('out.txt', 'w').write('ok')\n"
    )
    result = isolated.run([isolated.python, "-c", code], workdir, [examples])
    assert result.ok, result.stderr
    assert result.stdout == '{"text": "great"}\nread-only\n'
    assert examples.read_text() == '{"text": "great"}\n'
    assert (workdir / "out.txt").read_text() == "ok"
