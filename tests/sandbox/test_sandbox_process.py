"""The process backend: choosing an isolation mode, its masks, and running without one."""

from __future__ import annotations

import json
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_helpers import ESCAPES, escape, process_sandbox, processes_with, unique

import sandbox.isolation
import sandbox.process
from sandbox import ProcessSandbox, SandboxUnavailable, make_sandbox


@pytest.fixture
def no_tools_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A machine without bwrap and unshare; cached probes are forgotten both ways."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    sandbox.isolation.check_bubblewrap.cache_clear()
    sandbox.isolation.check_unshare.cache_clear()
    yield
    sandbox.isolation.check_bubblewrap.cache_clear()
    sandbox.isolation.check_unshare.cache_clear()


@pytest.mark.sandbox
def test_process_kind_prefers_bubblewrap() -> None:
    chosen = process_sandbox("bubblewrap")
    assert make_sandbox("process").name == chosen.name == "bubblewrap"


def test_without_isolation_tools_process_kind_refuses(no_tools_on_path: None) -> None:
    with pytest.raises(SandboxUnavailable, match="apt-get install -y bubblewrap"):
        make_sandbox("process")
    with pytest.raises(SandboxUnavailable, match="bwrap not found"):
        ProcessSandbox("bubblewrap")


def test_none_warns_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox.process, "_warned_no_isolation", False)
    with pytest.warns(RuntimeWarning, match="isolation is off"):
        first = make_sandbox("none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = ProcessSandbox("none")
    assert first.name == second.name == "none"


def test_none_still_scrubs_env_and_uses_a_private_tmpdir(workdir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bare = ProcessSandbox("none")
    env = {"OPENAI_API_KEY": "sk-" + "x" * 30, "KEEP": "1"}
    result = bare.run(escape(bare, "read_secrets.py"), workdir, env=env)
    seen = json.loads(result.stdout)["env"]
    assert "OPENAI_API_KEY" not in seen and seen["KEEP"] == "1"
    assert seen["HOME"] == str(workdir)
    assert seen["TMPDIR"] != "/tmp" and not Path(seen["TMPDIR"]).exists()  # removed after


def test_none_kills_children_left_behind(workdir: Path) -> None:
    """Without a pid namespace, the process group is what gets cleaned up after a run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bare = ProcessSandbox("none")
    marker = unique("orphan")
    assert bare.run(escape(bare, "leave_child.py", marker), workdir).ok
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


def test_unknown_kind_or_isolation_is_rejected() -> None:
    with pytest.raises(ValueError, match="process, docker, none"):
        make_sandbox("vm")
    with pytest.raises(ValueError, match="unknown isolation 'bwrap'"):
        make_sandbox("process", isolation="bwrap")


@pytest.mark.sandbox
@pytest.mark.parametrize("isolation", ["bubblewrap", "unshare"])
def test_credential_files_are_masked(
    isolation: str, workdir: Path, host_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default masks follow $HOME; the token must not be readable through the read-only root."""
    home = host_dir / "home"
    (home / ".cache/huggingface").mkdir(parents=True)
    (home / ".aws").mkdir()
    token = home / ".cache/huggingface/token"
    token.write_text("hf_" + "s" * 34)
    (home / ".netrc").write_text("machine example.org password hunter2")
    (home / ".aws/credentials").write_text("aws_secret_access_key = abcdef")
    monkeypatch.setenv("HOME", str(home))
    isolated = process_sandbox(isolation)
    files = [token, home / ".netrc", home / ".aws/credentials"]
    result = isolated.run(escape(isolated, "read_secrets.py", *files), workdir, [ESCAPES])
    assert result.ok, result.stderr
    for secret in ("hf_sss", "hunter2", "abcdef"):
        assert secret not in result.stdout
    assert token.read_text().startswith("hf_")  # the host's file is untouched


@pytest.mark.sandbox
def test_explicit_masks_replace_defaults(workdir: Path, host_dir: Path) -> None:
    secret = host_dir / "service-account.json"
    secret.write_text('{"private_key": "very secret"}')
    isolated = process_sandbox("bubblewrap", masked_paths=[secret])
    result = isolated.run(escape(isolated, "read_secrets.py", secret), workdir, [ESCAPES])
    assert "very secret" not in result.stdout


@pytest.mark.sandbox
def test_bubblewrap_command_line_shape(workdir: Path) -> None:
    argv = sandbox.isolation.bubblewrap_argv(["python", "x.py"], workdir, [ESCAPES], [], gpus=False)
    assert argv[:5] == ["bwrap", "--unshare-all", "--die-with-parent", "--cap-drop", "ALL"]
    assert ["--ro-bind", "/proc/sys", "/proc/sys"] == argv[argv.index("/proc/sys") - 1 :][:3]
    assert argv[-3:] == ["--", "python", "x.py"]
    # Binds go shortest path first, wherever the checkout and the work folder lie, so that a
    # path inside another one is bound on top of it.
    bound = [argv[i + 1] for i, flag in enumerate(argv) if flag in ("--bind", "--ro-bind")]
    ours = [path for path in bound if path in (str(ESCAPES), str(workdir))]
    assert sorted(ours) == sorted([str(ESCAPES), str(workdir)])
    assert ours == sorted(ours, key=len)
    inside = workdir / "input.csv"
    nested = sandbox.isolation.bubblewrap_argv(["python"], workdir, [inside], [], gpus=False)
    assert nested.index(str(inside)) > nested.index(str(workdir))
    assert nested[nested.index(str(inside)) - 1] == "--ro-bind"


RACE = (
    "bwrap: Can't bind mount /oldroot/ on /newroot/: Unable to apply mount flags: remount "
    '"/newroot/var/lib/docker/overlay2/0123-init/merged": Invalid argument\n'
)


@pytest.mark.sandbox
@pytest.mark.parametrize("races", [1, 2, 3])
def test_bubblewrap_losing_a_race_with_a_host_mount_starts_again(
    races: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Docker container starting or stopping beside bwrap can make its copy of the host's
    mounts fail before the command starts: the start is tried again, up to three times."""
    box = process_sandbox("bubblewrap")
    real = box._execute
    starts: list[int] = []

    def racing(argv, workdir, env, limits, on_output):
        starts.append(1)
        if len(starts) <= races:
            lost = sandbox.process.SandboxResult(1, "", RACE, False, False, 0.01, [])
            return lost, []
        return real(argv, workdir, env, limits, on_output)

    monkeypatch.setattr(box, "_execute", racing)
    (tmp_path / "work").mkdir()
    if races < sandbox.process.SETUP_ATTEMPTS:
        result = box.run(["/bin/echo", "ran"], tmp_path / "work")
        assert result.ok and result.stdout == "ran\n" and len(starts) == races + 1
    else:
        with pytest.raises(sandbox.process.SandboxError, match="Unable to apply mount flags"):
            box.run(["/bin/echo", "ran"], tmp_path / "work")
        assert len(starts) == sandbox.process.SETUP_ATTEMPTS


@pytest.mark.sandbox
def test_bubblewrap_starts_again_when_a_socket_to_mask_vanished(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A container stopping beside bwrap takes its socket away after the sandbox listed it to
    mask: bwrap then cannot create the mask's target in the read-only host folder. The start
    is tried again with the sockets listed again, and the command runs."""
    host_folder = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="vanishing-socket-"))
    path = host_folder / "shim.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    listings: list[int] = []

    def listening() -> list[Path]:
        listings.append(1)
        return [path] if path.exists() else []

    box = process_sandbox("bubblewrap")
    box._mask_unix_sockets = True
    real = box._execute
    failures: list[str] = []

    def vanishing(argv, workdir, env, limits, on_output):
        listener.close()
        path.unlink(missing_ok=True)
        result, errors = real(argv, workdir, env, limits, on_output)
        if not result.ok:
            failures.append(result.stderr)
        return result, errors

    monkeypatch.setattr(sandbox.process, "listening_unix_sockets", listening)
    monkeypatch.setattr(box, "_execute", vanishing)
    (tmp_path / "work").mkdir()
    try:
        result = box.run(["/bin/echo", "ran"], tmp_path / "work")
    finally:
        host_folder.rmdir()
    assert result.ok and result.stdout == "ran\n"
    assert len(failures) == 1 and "Can't create file at" in failures[0]
    assert len(listings) == 2
