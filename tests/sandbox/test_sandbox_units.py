"""Pure parts of the sandbox package: environment scrubbing, output capture, masks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import Limits
from sandbox.capture import MAX_CAPTURED_CHARS, LineCapture, looks_out_of_memory
from sandbox.env import is_secret, scrubbed_env
from sandbox.masks import Mask, listening_unix_sockets, masks_for

names = st.from_regex(r"[A-Z][A-Z0-9]{0,8}(_[A-Z0-9]{1,8}){0,2}", fullmatch=True)


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "GITHUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
        "DB_PASSWORD",
        "OPENAI_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize(
    "name", ["TOKENIZERS_PARALLELISM", "HF_HOME", "HF_HUB_CACHE", "PATH", "KEYBOARD", "MONKEY"]
)
def test_ordinary_names(name: str) -> None:
    assert not is_secret(name, "some value")


def test_secret_values_whatever_the_name() -> None:
    assert is_secret("LABELER_ARG", "hf_" + "a" * 34)
    assert is_secret("X", "sk-proj-" + "b" * 40)


@given(prefix=names, suffix=st.sampled_from(["_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD"]))
def test_secret_suffixes_never_pass(prefix: str, suffix: str) -> None:
    env = scrubbed_env({prefix + suffix: "v"}, home="/w", tmpdir="/tmp", limits=Limits())
    assert prefix + suffix not in env


def test_base_environment() -> None:
    env = scrubbed_env(
        {"HF_HUB_CACHE": "/models"}, home="/w", tmpdir="/t", limits=Limits(threads=3)
    )
    assert env["HOME"] == "/w" and env["TMPDIR"] == "/t" and env["HF_HUB_CACHE"] == "/models"
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
    assert env["LC_ALL"] == "C.UTF-8" and env["TOKENIZERS_PARALLELISM"] == "false"


@pytest.mark.parametrize(
    ("inherited", "limit", "expected"),
    [("1", None, "1"), ("4", 2, "2"), ("", None, None), ("zero", None, None), ("0", None, None)],
)
def test_threads_follow_the_limit_then_the_callers_omp_num_threads_then_the_cores(
    monkeypatch: pytest.MonkeyPatch, inherited: str, limit: int | None, expected: str | None
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", inherited)
    env = scrubbed_env(None, home="/w", tmpdir="/t", limits=Limits(threads=limit))
    assert env["OMP_NUM_THREADS"] == (expected or str(os.cpu_count() or 1))


def test_capture_splits_lines_across_chunks() -> None:
    lines: list[str] = []
    capture = LineCapture(lines.append)
    for chunk in [b"epo", b"ch 1\nepoch", b" 2\n", b"tail \xff"]:
        capture.feed(chunk)
    capture.close()
    assert lines == ["epoch 1", "epoch 2", "tail \ufffd"]
    assert capture.text() == "epoch 1\nepoch 2\ntail \ufffd"


def test_capture_keeps_the_tail_of_huge_output() -> None:
    capture = LineCapture()
    line = b"x" * 1023 + b"\n"
    for _ in range(MAX_CAPTURED_CHARS // 1024 + 100):
        capture.feed(line)
    capture.feed(b"last line\n")
    text = capture.text()
    assert text.startswith("[... ") and text.endswith("last line\n")
    assert len(text) <= MAX_CAPTURED_CHARS + 100


@pytest.mark.parametrize(
    ("code", "stderr", "expected"),
    [
        (1, "Traceback ...\nMemoryError\n", True),
        (1, "RuntimeError: DefaultCPUAllocator: can't allocate memory: you tried", True),
        (0, "MemoryError caught, retrying with smaller batches\n", False),
        (1, "ValueError: unknown label\n", False),
    ],
)
def test_out_of_memory_heuristic(code: int, stderr: str, expected: bool) -> None:
    assert looks_out_of_memory(code, stderr) is expected


def test_listening_unix_sockets_parse(tmp_path: Path) -> None:
    table = tmp_path / "unix"
    table.write_text(
        "Num       RefCount Protocol Flags    Type St Inode Path\n"
        "0000: 00000002 00000000 00010000 0001 01 1 /run/docker.sock\n"
        "0000: 00000002 00000000 00010000 0001 01 2 @abstract-name\n"
        "0000: 00000002 00000000 00000000 0001 03 3\n"
        "0000: 00000002 00000000 00010000 0001 01 4 /tmp/with space.sock\n"
    )
    assert listening_unix_sockets(table) == [Path("/run/docker.sock"), Path("/tmp/with space.sock")]


def test_masks_skip_missing_and_folders_holding_mounts(tmp_path: Path) -> None:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".netrc").write_text("x")
    work = tmp_path / "cache" / "work"
    work.mkdir(parents=True)
    candidates = [tmp_path / ".aws", tmp_path / ".netrc", tmp_path / "absent", tmp_path / "cache"]
    assert masks_for(candidates, keep_visible=[work]) == [
        Mask(tmp_path / ".aws", is_dir=True),
        Mask(tmp_path / ".netrc", is_dir=False),
    ]


def test_capture_flushes_endless_lines() -> None:
    lines: list[str] = []
    capture = LineCapture(lines.append)
    for _ in range(20):
        capture.feed(b"\r45%|#####     |" * 500)
    assert lines and all(len(line) <= 200_000 for line in lines)
