"""A Python that lives under /tmp (a checkout there, with its .venv) runs in every sandbox.

The sandboxes replace the host's /tmp with a private one. What the command runs from (the
interpreter, its venv, folders its .pth files add) must be bound back in, while everything
else under /tmp stays private and credentials inside bound folders stay covered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_helpers import process_sandbox

from agent.packaging.runner import run_package
from agent.settings import Settings
from sandbox import Sandbox
from sandbox.isolation import runtime_mounts

# The base interpreter, not this venv's link to it: a venv made from a venv would point at it.
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
PROBE = """
import json, os, sys
import probe_mod, editable_mod
paths = json.loads(sys.argv[1])
def read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError as error:
        return type(error).__name__
print(json.dumps({
    "prefix": sys.prefix,
    "modules": [probe_mod.VALUE, editable_mod.VALUE],
    "read": {path: read(path) for path in paths},
}))
"""


@pytest.fixture
def under_tmp() -> Iterator[Path]:
    """A folder in the host's /tmp itself (pytest's basetemp may be moved elsewhere)."""
    folder = Path(tempfile.mkdtemp(prefix="sandbox-runtime-", dir="/tmp"))
    folder.chmod(0o755)  # the Docker container's user reads the venv through it
    yield folder
    shutil.rmtree(folder)


def make_venv(folder: Path) -> Path:
    """A venv under ``folder`` with a module in its site-packages and one added by a .pth."""
    venv = folder / "checkout" / ".venv"
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "probe_mod.py").write_text("VALUE = 'from site-packages'\n")
    editable = folder / "checkout" / "src"
    editable.mkdir()
    (editable / "editable_mod.py").write_text("VALUE = 'from a .pth folder'\n")
    (site / "checkout.pth").write_text(f"{editable}\n")
    return venv / "bin" / "python"


def run_probe(sandbox: Sandbox, python: Path, workdir: Path, mounts: list[Path], paths: list[Path]):
    command = [str(python), "-c", PROBE, json.dumps([str(p) for p in paths])]
    result = sandbox.run(command, workdir, mounts)
    assert result.ok, result.stderr
    return json.loads(result.stdout)


def test_runtime_mounts_of_a_venv_under_tmp(under_tmp: Path) -> None:
    python = make_venv(under_tmp)
    venv, editable = python.parents[1], under_tmp / "checkout" / "src"
    mounts = runtime_mounts(str(python))
    code = "import sys; print(sys.base_prefix)"
    base = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    assert venv in mounts and editable in mounts
    assert Path(base.stdout.strip()).resolve() in mounts
    # The checkout itself, /tmp and / stay out; site-packages is inside the venv.
    assert under_tmp / "checkout" not in mounts and under_tmp not in mounts
    assert Path("/tmp") not in mounts and Path("/") not in mounts
    assert not any(parent in mounts for mount in mounts for parent in mount.parents)
    assert mounts == sorted(set(mounts))


def test_runtime_mounts_never_bring_back_tmp_or_the_root(under_tmp: Path) -> None:
    python = make_venv(under_tmp)
    site = next(python.parents[1].glob("lib/python*/site-packages"))
    (site / "broad.pth").write_text("/tmp\n/\n/proc/self\n")
    mounts = runtime_mounts(str(python))
    assert python.parents[1] in mounts
    assert not {Path("/tmp"), Path("/"), Path("/proc/self")} & set(mounts)
    assert not any(Path("/proc") in mount.parents for mount in mounts)


def test_runtime_mounts_of_an_interpreter_link_under_tmp(under_tmp: Path) -> None:
    link = under_tmp / "bin" / "python"
    link.parent.mkdir()
    link.symlink_to(Path(BASE_PYTHON).resolve())
    mounts = runtime_mounts(str(link))
    assert link in mounts  # the link's own path, to be bound from its target
    assert any(m in Path(BASE_PYTHON).resolve().parents for m in mounts)
    assert link.parent not in mounts


@pytest.mark.sandbox
@pytest.mark.parametrize("isolation", ["bubblewrap", "unshare"])
def test_a_venv_under_tmp_runs_and_the_rest_of_tmp_stays_private(
    isolation: str, under_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = make_venv(under_tmp)
    hf_home = under_tmp / "hf-home"
    (hf_home / "hub").mkdir(parents=True)
    (hf_home / "hub" / "weights.txt").write_text("weights")
    token = hf_home / "token"
    token.write_text("hf_" + "t" * 34)
    monkeypatch.setenv("HF_HOME", str(hf_home))  # the default masks follow it
    stray = under_tmp / "stray.txt"  # under /tmp, next to the venv, never mounted
    stray.write_text("private")
    workdir = under_tmp / "work"
    workdir.mkdir()
    sandbox = process_sandbox(isolation, python=str(python))
    report = run_probe(
        sandbox, python, workdir, [hf_home], [hf_home / "hub" / "weights.txt", token, stray]
    )
    assert report["prefix"] == str(python.parents[1])
    assert report["modules"] == ["from site-packages", "from a .pth folder"]
    assert report["read"][str(hf_home / "hub" / "weights.txt")] == "weights"
    assert "hf_ttt" not in report["read"][str(token)]  # masked after its folder was bound
    assert report["read"][str(stray)] == "FileNotFoundError"
    assert token.read_text().startswith("hf_")


@pytest.mark.sandbox
@pytest.mark.parametrize("isolation", ["bubblewrap", "unshare"])
def test_an_interpreter_link_under_tmp_runs(isolation: str, under_tmp: Path) -> None:
    link = under_tmp / "bin" / "python"
    link.parent.mkdir()
    link.symlink_to(Path(BASE_PYTHON).resolve())
    (under_tmp / "bin" / "neighbour.txt").write_text("private")
    workdir = under_tmp / "work"
    workdir.mkdir()
    sandbox = process_sandbox(isolation, python=str(link))
    code = "import json, os, sys; print(json.dumps(os.listdir(os.path.dirname(sys.argv[1]))))"
    result = sandbox.run([str(link), "-c", code, str(link)], workdir)
    assert result.ok, result.stderr
    assert json.loads(result.stdout) == ["python"]


@pytest.mark.docker
def test_a_venv_under_tmp_runs_in_a_container(
    docker_client: object, base_image: str, under_tmp: Path
) -> None:
    from sandbox.docker import DockerSandbox, host_python_mounts

    python = make_venv(under_tmp)
    stray = under_tmp / "stray.txt"
    stray.write_text("private")
    workdir = under_tmp / "work"
    workdir.mkdir()
    sandbox = DockerSandbox(
        base_image,
        client=docker_client,  # type: ignore[arg-type]
        python=str(python),
        extra_mounts=host_python_mounts(str(python)),
    )
    report = run_probe(sandbox, python, workdir, [], [stray])
    assert report["prefix"] == str(python.parents[1])
    assert report["modules"] == ["from site-packages", "from a .pth folder"]
    assert report["read"][str(stray)] == "FileNotFoundError"


def test_containers_refuse_a_venv_holding_a_credential(
    under_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Containers mask nothing: a secret inside a folder mounted for Python must stop it."""
    pytest.importorskip("docker")
    from sandbox.docker import host_python_mounts

    python = make_venv(under_tmp)
    token = python.parents[1] / "hf-token"
    token.write_text("hf_" + "t" * 34)
    monkeypatch.setenv("HF_TOKEN_PATH", str(token))
    with pytest.raises(ValueError, match="hf-token"):
        host_python_mounts(str(python))


def test_containers_refuse_a_system_interpreter() -> None:
    pytest.importorskip("docker")
    from sandbox.docker import host_python_mounts

    system = shutil.which("python3", path="/usr/bin")
    if system is None:
        pytest.skip("no /usr/bin/python3 here")
    with pytest.raises(ValueError, match="not self-contained"):
        host_python_mounts(system)


@pytest.mark.sandbox
def test_labeler_runs_see_the_hub_cache_but_never_hf_home(
    under_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_package mounts the Hub cache under /tmp, not the HF_HOME above it with the token."""
    from huggingface_hub import constants

    hf_home = under_tmp / "hf-home"
    (hf_home / "hub").mkdir(parents=True)
    (hf_home / "hub" / "weights.txt").write_text("weights")
    (hf_home / "token").write_text("hf_" + "t" * 34)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    package = under_tmp / "package"
    (package / "fake_labeler").mkdir(parents=True)
    (package / "fake_labeler" / "__init__.py").write_text("")
    (package / "fake_labeler" / "__main__.py").write_text(
        "import json, os, sys\n"
        "cache = os.environ['HF_HUB_CACHE']\n"
        "weights = open(os.path.join(cache, 'weights.txt')).read()\n"
        "home = sorted(os.listdir(os.path.dirname(cache)))\n"
        "event = {'event': 'seen', 'weights': weights, 'home': home}\n"
        "print(json.dumps(event), file=sys.stderr)\n"
    )
    sandbox = process_sandbox("bubblewrap")
    events = run_package(
        sandbox, package, ["fake_labeler"], under_tmp / "work", [], Settings(device="cpu")
    )
    assert events == [{"event": "seen", "weights": "weights", "home": ["hub"]}]
