"""The sandbox probe and the agent's preflight, against sandboxes broken for real.

Each broken case is a real failure a labeler run would hit: an interpreter the sandbox does
not show, a torch that does not import, an image without Python, a backend that reaches the
host's loopback. The probe must name it in one line with its fix; the agent must stop with
that line before its first sandboxed step, remember only passing probes, and probe again
when what the result depends on changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from agent.cli import main
from agent.context import RunContext
from agent.errors import SandboxCheckError
from agent.files import LOCK_FILE
from agent.packaging.probe import probe_sandbox
from agent.preflight import preflight
from agent.runs import execute, prepare_run
from agent.settings import Settings
from sandbox import ProcessSandbox, make_sandbox
from tests.sandbox.sandbox_helpers import (
    BASE_IMAGE,
    docker_base_url,
    docker_client_or_skip,
    process_sandbox,
)
from tests.support.broken_sandboxes import (
    SHM,
    RecordingSandbox,
    interpreter_with_broken_torch,
    interpreter_wrapper,
    venv_copy,
)
from tests.support.fakes import RecordingReporter

pytestmark = pytest.mark.filterwarnings("ignore:sandbox isolation is off")
ISOLATIONS = [
    pytest.param("bubblewrap", marks=pytest.mark.sandbox),
    pytest.param("unshare", marks=pytest.mark.sandbox),
]


@pytest.fixture
def host_dir(tmp_path: Path):
    """A folder outside /tmp, which the isolated sandboxes replace with their own."""
    folder = Path(f"/var/tmp/preflight-test-{os.getpid()}-{tmp_path.name}")
    folder.mkdir()
    yield folder
    shutil.rmtree(folder)


@pytest.fixture
def shm_venv(tmp_path: Path):
    """A virtualenv under /dev/shm: there on the host, absent inside isolated sandboxes."""
    if not SHM.is_dir() or not os.access(SHM, os.W_OK):
        pytest.skip("no writable /dev/shm here")
    folder = SHM / f"preflight-test-{os.getpid()}-{tmp_path.name}"
    folder.mkdir()
    yield venv_copy(folder)
    shutil.rmtree(folder)


def none_sandbox(python: Path | None = None) -> ProcessSandbox:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ProcessSandbox("none", python=str(python) if python else None)


def settings_for(tmp_path: Path, **values) -> Settings:
    defaults = {
        "runs_dir": tmp_path / "runs",
        "out": tmp_path / "out",
        "preflight_cache": tmp_path / "preflight.json",
    }
    return Settings(**(defaults | values))


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_probe_passes_where_a_labeler_runs(isolation: str, tmp_path: Path) -> None:
    box = process_sandbox(isolation)
    probe = probe_sandbox(box, settings_for(tmp_path), tmp_path)
    assert probe.ok, probe.detail
    assert probe.detail.startswith(f"{sys.executable} starts, torch ")
    assert probe.detail.endswith("work folder writable, network cut")
    assert list(tmp_path.iterdir()) == []  # the probe's scratch folder is gone


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_probe_names_an_interpreter_the_sandbox_does_not_show(
    isolation: str, shm_venv: Path, tmp_path: Path
) -> None:
    box = process_sandbox(isolation, python=str(shm_venv))
    probe = probe_sandbox(box, settings_for(tmp_path), tmp_path)
    assert not probe.usable
    assert probe.detail.startswith(f"interpreter {shm_venv} cannot start inside {isolation}: ")
    assert "No such file or directory" in probe.detail
    assert probe.detail.endswith(
        "keep the virtualenv outside /dev (the sandbox has its own /dev) "
        "or update autoannotator-agent"
    )


@pytest.mark.parametrize("isolation", ["none", *ISOLATIONS])
def test_probe_names_a_torch_that_does_not_import(
    isolation: str, host_dir: Path, tmp_path: Path
) -> None:
    python = interpreter_with_broken_torch(host_dir)
    box = (
        none_sandbox(python)
        if isolation == "none"
        else process_sandbox(isolation, python=str(python))
    )
    probe = probe_sandbox(box, settings_for(tmp_path), tmp_path)
    assert not probe.usable
    assert probe.detail == (
        f"{python} cannot import torch inside {isolation}: ImportError: torch is broken here; "
        f"install torch for {python} (its pip install 'torch>=2.11')"
    )


def test_probe_without_isolation_reaches_the_loopback_listener(tmp_path: Path) -> None:
    probe = probe_sandbox(none_sandbox(), settings_for(tmp_path), tmp_path)
    assert probe.usable and not probe.isolated and not probe.ok
    assert probe.detail.startswith("network isolation is off: the probe reached a listener on")
    assert "expected with --sandbox none" in probe.detail


@pytest.mark.docker
def test_probe_names_an_image_without_python(tmp_path: Path) -> None:
    from sandbox.docker import DockerSandbox

    client = docker_client_or_skip()
    try:
        bare = DockerSandbox(BASE_IMAGE, python="python3", client=client)
        probe = probe_sandbox(bare, settings_for(tmp_path), tmp_path)
        assert not probe.usable
        assert probe.detail.startswith(
            f'no python3 in image {BASE_IMAGE}: exec: "python3": executable file not found'
        )
        assert "AUTOANNOTATOR_DOCKER_PYTHON" in probe.detail

        mounted = DockerSandbox(BASE_IMAGE, mount_host_python=True, client=client)
        probe = probe_sandbox(mounted, settings_for(tmp_path), tmp_path)
        assert probe.ok, probe.detail
    finally:
        client.close()


@pytest.mark.slow
def test_a_passing_probe_is_remembered_until_the_interpreter_changes(tmp_path: Path) -> None:
    python = interpreter_wrapper(tmp_path / "interpreter")
    box = RecordingSandbox(none_sandbox(python))
    reporter = RecordingReporter()
    context = RunContext(settings_for(tmp_path), box, reporter)

    assert preflight(context, tmp_path / "run") is not None
    assert preflight(context, tmp_path / "run") is None  # remembered: no second sandbox run
    assert len(box.commands) == 1
    assert len(reporter.infos) == 1
    assert reporter.infos[0].startswith("sandbox none: network isolation is off")

    stat = python.stat()
    os.utime(python, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert preflight(context, tmp_path / "run") is not None
    assert len(box.commands) == 2
    assert preflight(context, tmp_path / "run") is None
    assert len(box.commands) == 2


def test_a_failing_probe_stops_the_run_and_is_not_remembered(
    host_dir: Path, tmp_path: Path
) -> None:
    python = interpreter_with_broken_torch(host_dir)
    box = RecordingSandbox(none_sandbox(python))
    context = RunContext(settings_for(tmp_path), box, RecordingReporter())
    for attempt in (1, 2):
        with pytest.raises(SandboxCheckError, match="cannot import torch inside none"):
            preflight(context, tmp_path / "run")
        assert len(box.commands) == attempt
    assert not (tmp_path / "preflight.json").exists()
    assert list((tmp_path / "run").iterdir()) == []


@pytest.mark.slow
def test_a_backend_that_claims_isolation_but_reaches_the_listener_stops_the_run(
    tmp_path: Path,
) -> None:
    leaky = RecordingSandbox(none_sandbox(), name="leaky")
    context = RunContext(settings_for(tmp_path), leaky, RecordingReporter())
    with pytest.raises(SandboxCheckError) as stopped:
        preflight(context, tmp_path / "run")
    assert str(stopped.value).startswith(
        "sandbox leaky: network isolation is broken: the probe reached a listener on 127.0.0.1:"
    )
    # --sandbox none was chosen knowing that: it runs, and the pass is remembered.
    context = RunContext(
        settings_for(tmp_path), RecordingSandbox(none_sandbox()), RecordingReporter()
    )
    assert preflight(context, tmp_path / "run") is not None


@pytest.mark.slow
def test_the_agent_stops_before_its_first_step_and_resumes_once_fixed(
    host_dir: Path, tmp_path: Path, tweets_csv: Path, toxic_voters: dict[str, Path]
) -> None:
    settings = settings_for(
        tmp_path,
        sandbox="none",
        offline=True,
        models=(str(toxic_voters["plain"]),),
        verifier="none",
    )
    run = prepare_run("label tweets for toxicity", tweets_csv, settings)
    broken = none_sandbox(interpreter_with_broken_torch(host_dir))
    reporter = RecordingReporter()
    with pytest.raises(SandboxCheckError, match="^sandbox none: .* cannot import torch inside"):
        execute(run, run.run_id, Path(run.run_dir), RunContext(settings, broken, reporter))
    assert reporter.stages == []  # not even the planner ran
    assert sorted(p.name for p in Path(run.run_dir).iterdir()) == [LOCK_FILE, "request.json"]

    fixed = RunContext(settings, make_sandbox("none"), RecordingReporter())
    result = execute(None, run.run_id, Path(run.run_dir), fixed)
    assert Path(result.output_path).is_file()
    assert result.labeling.rows > 0


@pytest.mark.sandbox
@pytest.mark.slow
def test_cli_from_a_venv_the_sandbox_cannot_see_stops_with_the_fix_then_resumes(
    shm_venv: Path,
    tmp_path: Path,
    tweets_csv: Path,
    toxic_voters: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    process_sandbox("bubblewrap")
    args = ["label tweets for toxicity", "--data", str(tweets_csv), "--offline", "--yes"]
    args += ["--model", str(toxic_voters["plain"]), "--sandbox", "process", "--verifier", "none"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOANNOTATOR_")}
    env["AUTOANNOTATOR_PREFLIGHT_CACHE"] = str(tmp_path / "preflight.json")
    done = subprocess.run(
        [str(shm_venv), "-m", "agent", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    error = lines[-1]
    assert error.startswith(
        f"error: sandbox bubblewrap: interpreter {shm_venv} cannot start inside bubblewrap: "
        f"bwrap: execvp {shm_venv}: No such file or directory; keep the virtualenv outside /dev"
    ), done.stderr
    run_id = error.rsplit("--resume ", 1)[1].rstrip("]")
    runs = tmp_path / ".autoannotator" / "runs"
    assert sorted(p.name for p in (runs / run_id).iterdir()) == [LOCK_FILE, "request.json"]

    monkeypatch.chdir(tmp_path)
    assert main(["--resume", run_id]) == 0
    assert next((tmp_path / "generated").rglob("manifest.json")).is_file()


@pytest.mark.docker
def test_cli_with_an_image_without_python_stops_with_one_line(
    tmp_path: Path,
    tweets_csv: Path,
    toxic_voters: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docker_client_or_skip().close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_HOST", docker_base_url())
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_BASE_IMAGE", BASE_IMAGE)
    args = ["label tweets for toxicity", "--data", str(tweets_csv), "--offline", "--yes"]
    args += ["--model", str(toxic_voters["plain"]), "--sandbox", "docker"]

    assert main(args) == 1

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1
    assert errors[0].startswith(
        f'error: sandbox docker: no python3 in image {BASE_IMAGE}: exec: "python3": '
    )
    (run_dir,) = (tmp_path / ".autoannotator" / "runs").iterdir()
    assert errors[0].endswith(f"continue with --resume {run_dir.name}]")
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE, "request.json"]
