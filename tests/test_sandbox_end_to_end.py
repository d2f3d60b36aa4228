"""The same end-to-end CLI run in each isolating backend gives the same labeled data.

``--sandbox process`` (bubblewrap, else unshare) and ``--sandbox docker`` (the private engine
of scripts/docker-engine.sh; each package in its own image, built on the dependencies image
of tests/support/docker_images.py with the Dockerfile's offline pip arguments) run the agent
over the same tweets with the same tiny voters and the same scripted LLM judge. The labeler is
one implementation, so every output cell must match: labels, sources, confidences and each
voter's label and probability (the three named voters and the two learned ones the LLM
verifier adds).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.cli import main
from tests.sandbox.sandbox_helpers import BASE_IMAGE, docker_base_url, docker_client_or_skip
from tests.support.datasets import read_csv
from tests.support.docker_images import OFFLINE_PIP_ARGS, dependencies_image
from tests.support.hub_fixtures import TOXIC_WORDS
from tests.support.llm_scripts import keyword_judge, toxicity_plan
from tests.support.openai_server import ScriptedOpenAI

pytestmark = pytest.mark.slow

Rows = list[dict[str, str]]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def backend_environment(backend: str) -> dict[str, str]:
    """The ``AUTOANNOTATOR_*`` variables a user sets for ``backend``."""
    if backend != "docker":
        return {}
    return {
        "AUTOANNOTATOR_DOCKER_HOST": docker_base_url(),
        "AUTOANNOTATOR_DOCKER_BASE_IMAGE": dependencies_image(docker_base_url(), BASE_IMAGE),
        "AUTOANNOTATOR_DOCKER_PIP_ARGS": OFFLINE_PIP_ARGS,
    }


@pytest.fixture(scope="module")
def label_with(
    tmp_path_factory: pytest.TempPathFactory, toxic_voters: dict[str, Path]
) -> Iterator[Callable[[str], tuple[Path, Rows]]]:
    """Runs the CLI once per backend (memoised); returns its working folder and labeled rows."""
    root = tmp_path_factory.mktemp("backends")
    tweets = root / "tweets.csv"
    shutil.copy(EXAMPLES / "tweets.csv", tweets)
    done: dict[str, tuple[Path, Rows]] = {}

    def label(backend: str) -> tuple[Path, Rows]:
        if backend in done:
            return done[backend]
        folder = root / backend
        folder.mkdir()
        output = folder / "labeled.csv"
        server = ScriptedOpenAI()
        server.respond_with(keyword_judge(toxicity_plan(), TOXIC_WORDS))
        args = ["label tweets for toxicity", "--data", str(tweets), "--out", str(folder / "out")]
        args += ["--output", str(output), "--llm-base-url", server.url, "--sandbox", backend]
        args += ["--device", "cpu", "--yes"]
        for path in toxic_voters.values():
            args += ["--model", str(path)]
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(folder)
                patch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000000000")
                for name, value in backend_environment(backend).items():
                    patch.setenv(name, value)
                assert main(args) == 0, f"the {backend} run failed"
        finally:
            server.close()
        done[backend] = folder, read_csv(output)
        return done[backend]

    yield label


def labeler_outputs(folder: Path) -> list[Path]:
    """The labeled files the sandboxed labeler wrote in its work folders."""
    return sorted(folder.glob(".autoannotator/runs/*/labeled/*/output.csv"))


@pytest.mark.sandbox
def test_process_backend_labels_every_row(label_with, sandbox_kind: str) -> None:
    if sandbox_kind != "process":
        pytest.skip("neither bubblewrap nor unshare isolates on this machine")
    _folder, rows = label_with("process")
    inputs = read_csv(EXAMPLES / "tweets.csv")
    assert [row["id"] for row in rows] == [row["id"] for row in inputs]
    assert {row["label"] for row in rows} <= {"toxic", "non-toxic"}
    # Unverified rows keep the last pass's vote ("vote" when the row needs review); the LLM
    # verifies rows in rounds, at most the default 30% of the data.
    assert {row["source"] for row in rows} <= {"consensus", "vote", "llm"}
    verified = [row for row in rows if row["source"] == "llm"]
    assert 0 < len(verified) <= 0.3 * len(rows)


@pytest.mark.docker
def test_docker_backend_labels_exactly_like_the_process_backend(
    label_with, sandbox_kind: str
) -> None:
    docker_client_or_skip().close()
    if sandbox_kind != "process":
        pytest.skip("neither bubblewrap nor unshare isolates on this machine: nothing to compare")
    _, process_rows = label_with("process")
    docker_folder, docker_rows = label_with("docker")

    assert list(docker_rows[0]) == list(process_rows[0])
    voter_columns = [c for c in process_rows[0] if c.startswith(("label_", "prob_"))]
    # Three named voters and the two learned ones ("minilm_head", "tfidf").
    assert len(voter_columns) == 2 * 5
    for process_row, docker_row in zip(process_rows, docker_rows, strict=True):
        assert docker_row == process_row, docker_row["id"]

    # The rows really came out of containers: files they wrote belong to their uid 65534.
    written = labeler_outputs(docker_folder)
    assert written and {path.stat().st_uid for path in written} == {65534}
