"""`autoannotator-agent doctor`: one line per sandbox backend, each saying ok or no and why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.cli import main
from sandbox.isolation import check_bubblewrap, check_unshare
from tests.sandbox.sandbox_helpers import BASE_IMAGE, docker_base_url, docker_client_or_skip

BACKENDS = ("bubblewrap", "unshare", "docker", "gpu")
ROW = re.compile(r"^│ (?P<name>[^│]+?) +│ (?P<verdict>ok|no): (?P<detail>.+?) +│$")


def doctor(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> dict:
    """What ``doctor`` printed: check name -> (ok, reason)."""
    monkeypatch.setenv("COLUMNS", "400")  # one table row per check, nothing wrapped
    monkeypatch.setenv("AUTOANNOTATOR_OFFLINE", "1")  # no LLM or Hub probes over the network
    assert main(["doctor"]) == 0
    rows = {}
    for line in capsys.readouterr().err.splitlines():
        match = ROW.match(line.strip())
        if match:
            rows[match["name"]] = (match["verdict"] == "ok", match["detail"])
    return rows


def test_reports_every_backend_with_a_reason(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = f"unix://{tmp_path}/no-engine.sock"
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_HOST", missing)

    rows = doctor(capsys, monkeypatch)

    assert [name for name in rows if name.startswith("sandbox: ")] == [
        f"sandbox: {backend}" for backend in BACKENDS
    ]
    assert all(len(detail) > 5 for _ok, detail in rows.values())
    assert rows["sandbox: bubblewrap"] == tuple(check_bubblewrap())
    assert rows["sandbox: unshare"] == tuple(check_unshare())
    docker_ok, docker_reason = rows["sandbox: docker"]
    assert not docker_ok and f"no Docker engine reachable at {missing}" in docker_reason
    assert rows["LLM endpoint"] == (False, "off (--offline)")


@pytest.mark.docker
def test_reports_the_engine_and_the_configured_image(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    docker_client_or_skip().close()
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_HOST", docker_base_url())
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_IMAGE", BASE_IMAGE)

    ok, reason = doctor(capsys, monkeypatch)["sandbox: docker"]

    assert ok, reason
    assert f"image {BASE_IMAGE} present" in reason and "nvidia runtime" in reason
