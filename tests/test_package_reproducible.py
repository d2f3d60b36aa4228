"""A reproducible package: issue 19, part 5.

Two agent runs on the same data and settings, in two folders, emit packages that are byte for
byte the same, README and code included, except the ``manifest.json`` provenance fields the
package's own README lists; and inside an emitted package, ``black --check .`` and
``ruff check .`` pass with nothing but its own ``pyproject.toml``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from tests.support.datasets import EXAMPLE_TWEETS
from tests.support.hub_packages import tree

pytestmark = pytest.mark.slow

PACKAGE = "toxicity-labeler"


def emit_offline(folder: Path) -> Path:
    """The offline catalog's voters on ``examples/tweets.csv``, nothing verified."""
    folder.mkdir(parents=True)
    data = folder / "tweets.csv"
    shutil.copy(EXAMPLE_TWEETS, data)
    command = ["label tweets for toxicity", "--data", str(data), "--offline", "--yes"]
    command += ["--verifier", "none", "--sandbox", "none", "--out", str(folder / "out")]
    command += ["--runs-dir", str(folder / "runs")]
    assert main(command) == 0
    return folder / "out" / PACKAGE


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("reproducible")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("OPENAI_API_KEY", raising=False)
        patch.setenv("AUTOANNOTATOR_VERDICT_CACHE", str(root / "verdicts.sqlite"))
        patch.setenv("AUTOANNOTATOR_PREFLIGHT_CACHE", str(root / "preflight.json"))
        return emit_offline(root / "first"), emit_offline(root / "second")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are leaves)."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat |= flatten(item, f"{prefix}.{key}" if prefix else key)
    return flat


def listed_manifest_fields(readme: str) -> set[str]:
    """The manifest fields the README's "Reproducibility" section says may differ."""
    section = readme.split("## Reproducibility", 1)[1].split("\n## ", 1)[0]
    bullets = [line for line in section.splitlines() if line.startswith("- `")]
    return {field for line in bullets for field in re.findall(r"`([^`]+)`", line)}


def test_two_runs_on_the_same_inputs_emit_the_same_bytes_but_the_listed_manifest_fields(
    two_builds: tuple[Path, Path],
):
    first, second = (tree(package) for package in two_builds)

    assert sorted(first) == sorted(second)
    differing = sorted(name for name in first if first[name] != second[name])
    assert differing == ["manifest.json"], {
        name: (first[name][:2000], second[name][:2000])
        for name in differing
        if name != "manifest.json"
    }
    assert any(name.endswith(".py") for name in first) and "README.md" in first

    manifests = [flatten(json.loads(files["manifest.json"])) for files in (first, second)]
    changed = {key for key in manifests[0] if manifests[0][key] != manifests[1].get(key)}
    allowed = listed_manifest_fields(first["README.md"].decode("utf-8"))
    assert {"provenance.run_id", "provenance.data.path", "provenance.settings.out"} <= changed
    assert changed <= allowed, changed - allowed
    assert all(key.startswith("provenance.") for key in allowed)
    # Timings belong to the run report, not to the package.
    assert b"labeling time" not in first["README.md"] and b"rows/s)" not in first["README.md"]


def run_tool(package: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=package,
        capture_output=True,
        text=True,
        check=False,
    )


def test_black_and_ruff_pass_inside_the_package_with_its_own_settings(
    two_builds: tuple[Path, Path], tmp_path: Path
):
    package = Path(shutil.copytree(two_builds[0], tmp_path / "package"))

    black = run_tool(package, "black", "--check", ".")
    ruff = run_tool(package, "ruff", "check", "--no-cache", ".")

    assert black.returncode == 0, black.stderr
    assert "would be left unchanged" in black.stderr
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    # The settings are what makes them pass: black's default line length would reformat.
    default = run_tool(package, "black", "--check", "--line-length", "88", ".")
    assert default.returncode == 1 and "would reformat" in default.stderr
