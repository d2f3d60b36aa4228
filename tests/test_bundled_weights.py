"""Weights travel with the package: issue 19, part 1.

The agent picks two voters from the loopback Hub and emits the package: each Hub voter's
pinned files are inside it, equal to the hashes ``models.lock.json`` pins, and with the Hub
stopped, no network and an empty Hugging Face cache it labels like the agent's own run. A
changed weight file is refused in one line before any row is labeled; the check runs once per
install (a stamp), and a changed file is checked again. With ``--no-bundle-weights`` the
package only references the pinned revisions, and the Dockerfile's fetch step, run for real
against the Hub, fetches exactly those, which the package then checks and labels with offline.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.datasets import read_csv
from tests.support.hub_fixtures import TinyModelCache, add_catalog, point_client_at
from tests.support.hub_packages import (
    MODULE,
    Emitted,
    emit_from_hub,
    offline_env,
    run_labeler,
    sha256_file,
)
from tests.support.hub_server import LoopbackHub

pytestmark = pytest.mark.slow

STAMP = ".verified-weights.json"


@pytest.fixture(scope="module")
def emitted(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_models: TinyModelCache,
    sandbox_kind: str,
    session_preflight_cache: Path,
) -> Iterator[Emitted]:
    """One agent run against the catalog Hub (stopped once the package is out)."""
    from huggingface_hub.utils import close_session

    folder = tmp_path_factory.mktemp("bundled")
    with pytest.MonkeyPatch.context() as patch, LoopbackHub() as hub:
        add_catalog(hub, tiny_models)
        point_client_at(hub.url, patch, folder / "agent-hf-home")
        patch.delenv("OPENAI_API_KEY", raising=False)
        patch.setenv("AUTOANNOTATOR_VERDICT_CACHE", str(folder / "verdicts.sqlite"))
        patch.setenv("AUTOANNOTATOR_PREFLIGHT_CACHE", str(session_preflight_cache))
        result = emit_from_hub(folder / "run", sandbox_kind)
        hub.stop()
        close_session()
        yield result


def lock_of(package: Path) -> dict:
    return json.loads((package / "models.lock.json").read_text(encoding="utf-8"))


def private_copy(emitted: Emitted, tmp_path: Path) -> Path:
    return Path(shutil.copytree(emitted.package, tmp_path / "package"))


def test_the_package_carries_each_hub_voters_pinned_files_and_they_match_the_lock(
    emitted: Emitted,
):
    package = emitted.package
    lock = lock_of(package)
    assert len(lock["voters"]) == 2
    # The labeler reads the lock from inside its module (what pip installs).
    assert (package / MODULE / "models.lock.json").read_bytes() == (
        package / "models.lock.json"
    ).read_bytes()
    for voter in lock["voters"]:
        assert voter["source"].startswith("hub:") and len(voter["revision"]) == 40
        assert voter["bundled"] == f"models/{voter['name']}"
        folder = package / MODULE / voter["bundled"]
        assert {p.name for p in folder.iterdir()} == set(voter["files"])
        assert "model.safetensors" in voter["files"]
        for name, digest in voter["files"].items():
            assert sha256_file(folder / name) == digest
            assert not (folder / name).is_symlink()
    spec = (package / MODULE / "spec.py").read_text(encoding="utf-8")
    assert spec.count("bundled=") == 2
    # The agent's labeler runs checked the weights, but no stamp of its install is emitted.
    assert not list(package.rglob(STAMP))
    readme = (package / "README.md").read_text(encoding="utf-8")
    for voter in lock["voters"]:
        repo = voter["source"][len("hub:") :]
        link = f"(https://huggingface.co/{repo}/tree/{voter['revision']})"
        line = next(line for line in readme.splitlines() if link in line)
        assert "licence apache-2.0" in line and "bundled in" in line


def test_with_the_hub_stopped_no_network_and_an_empty_cache_it_labels_like_the_agent(
    emitted: Emitted, tmp_path: Path
):
    package = private_copy(emitted, tmp_path)
    hf_home = tmp_path / "empty-hf-home"
    env = offline_env(hf_home)
    output = tmp_path / "labeled.csv"

    done = run_labeler(package, [str(emitted.data), "--output", str(output)], env, tmp_path)

    assert done.returncode == 0, done.stderr
    assert read_csv(output) == read_csv(emitted.raw_output)
    assert not list(hf_home.rglob("*.safetensors"))  # nothing was fetched


def tamper(path: Path) -> None:
    """Flip one byte in the middle of ``path`` (same size)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_changed_weight_file_is_refused_in_one_line_before_any_row_is_labeled(
    emitted: Emitted, tmp_path: Path
):
    package = private_copy(emitted, tmp_path)
    voter = lock_of(package)["voters"][1]["name"]
    tamper(package / MODULE / "models" / voter / "model.safetensors")
    output = tmp_path / "labeled.csv"

    done = run_labeler(
        package,
        [str(emitted.data), "--output", str(output)],
        offline_env(tmp_path / "hf"),
        tmp_path,
    )

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        f"error: voter {voter}: models/{voter}/model.safetensors does not match "
        "models.lock.json (sha256 "
    ), lines[0]
    assert not output.exists() and not list(tmp_path.glob("labeled.csv*"))


def verify(package: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run_labeler(package, ["verify", *args], offline_env(tmp_path / "hf"), tmp_path)


COUNT_HASHES = f"""
import sys
from {MODULE} import weights
from {MODULE}.cli import main

hashed = []
original = weights.sha256_of
weights.sha256_of = lambda path: hashed.append(path) or original(path)
code = main(sys.argv[1:])
print(len(hashed), file=sys.stderr)
sys.exit(code)
"""


def label_counting_hashes(package: Path, args: list[str], tmp_path: Path) -> tuple[int, int]:
    """The labeler's exit status and how many files it hashed while starting and labeling."""
    done = subprocess.run(
        [sys.executable, "-c", COUNT_HASHES, *args],
        env={**offline_env(tmp_path / "hf"), "PYTHONPATH": str(package)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, int(done.stderr.strip().splitlines()[-1])


def test_the_check_runs_once_per_install_and_a_changed_file_is_checked_again(
    emitted: Emitted, tmp_path: Path
):
    package = private_copy(emitted, tmp_path)
    voters = lock_of(package)["voters"]
    files = sum(len(voter["files"]) for voter in voters)
    label = [str(emitted.data), "--output", str(tmp_path / "out.csv"), "--progress", "none"]

    first = verify(package, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("match models.lock.json (hashed)") == 2
    assert (package / MODULE / STAMP).is_file()
    second = verify(package, tmp_path)
    assert second.stderr.count("(the stamp of an earlier check, not hashed again)") == 2

    # A start with the stamp in place hashes nothing; --force hashes everything again.
    assert label_counting_hashes(package, label, tmp_path) == (0, 0)
    assert verify(package, tmp_path, "--force").stderr.count("(hashed)") == 2

    # The same bytes with a new modification time: hashed again, and still accepted.
    config = package / MODULE / "models" / voters[0]["name"] / "config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    assert label_counting_hashes(package, label, tmp_path) == (0, len(voters[0]["files"]))
    assert label_counting_hashes(package, label, tmp_path) == (0, 0)

    # Changed bytes under a valid stamp: the stamp no longer vouches, the file is refused.
    tamper(config)
    refused = verify(package, tmp_path)
    assert refused.returncode == 1
    assert f"models/{voters[0]['name']}/config.json does not match" in refused.stderr
    assert files > len(voters[0]["files"])


def test_a_missing_or_an_added_file_is_refused_and_a_read_only_package_keeps_its_stamp_in_the_user_cache(  # noqa: E501
    emitted: Emitted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from templates.labeler.pkg.weights import WeightsError, stamp_paths, verify_bundled

    package = private_copy(emitted, tmp_path)
    root = package / MODULE
    voter = lock_of(package)["voters"][0]["name"]
    folder = root / "models" / voter

    (folder / "special_tokens_map.json").write_text("{}", encoding="utf-8")
    with pytest.raises(WeightsError, match=r"special_tokens_map.json is not pinned in models"):
        verify_bundled(root, voter, f"models/{voter}")
    (folder / "special_tokens_map.json").unlink()
    moved = (folder / "tokenizer.json").rename(tmp_path / "tokenizer.json")
    with pytest.raises(WeightsError, match=r"tokenizer.json is missing \(models.lock.json pins"):
        verify_bundled(root, voter, f"models/{voter}")
    moved.rename(folder / "tokenizer.json")

    # The package folder takes no stamp (here: a folder stands where the stamp would go).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (root / STAMP).mkdir()
    assert verify_bundled(root, voter, f"models/{voter}").hashed
    assert not verify_bundled(root, voter, f"models/{voter}").hashed
    user_stamp = stamp_paths(root)[1]
    assert user_stamp.is_file() and user_stamp.is_relative_to(tmp_path / "cache")
    assert voter in json.loads(user_stamp.read_text(encoding="utf-8"))


def dockerfile_fetch_script(dockerfile: str) -> str:
    """The Dockerfile's fetch step as a shell script: its FETCH argument, then its RUN line."""
    lines = dockerfile.replace("\\\n", "").splitlines()
    fetch = next(line for line in lines if line.startswith("ARG FETCH="))
    run = next(line for line in lines if line.startswith("RUN ") and '"$FETCH"' in line)
    value = shlex.split(fetch[len("ARG FETCH=") :])[0]
    return f"FETCH={shlex.quote(value)}\n{run[len('RUN ') :]}\n"


def test_without_bundled_weights_the_dockerfile_fetches_the_pinned_revisions_and_they_label_offline(  # noqa: E501
    catalog_hub: LoopbackHub, tmp_path: Path, sandbox_kind: str, monkeypatch
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    emitted = emit_from_hub(tmp_path / "run", sandbox_kind, "--no-bundle-weights")
    package = emitted.package
    lock = lock_of(package)
    assert not (package / MODULE / "models").exists()
    assert all("bundled" not in voter for voter in lock["voters"])
    dockerfile = (package / "Dockerfile").read_text(encoding="utf-8")
    for voter in lock["voters"]:
        repo = voter["source"][len("hub:") :]
        assert voter["revision"] == catalog_hub.models[repo].refs["main"]
        step = f'"$FETCH" {repo} {voter["revision"]} ' + " ".join(sorted(voter["files"]))
        assert step in dockerfile

    # The fetch step, run as the build runs it, against the Hub (HF_ENDPOINT is set).
    cache = tmp_path / "image-hub-cache"
    script = dockerfile_fetch_script(dockerfile)
    build_env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_CACHE": str(cache)}
    fetched = subprocess.run(
        ["sh", "-c", script], env=build_env, capture_output=True, text=True, check=False
    )
    assert fetched.returncode == 0, fetched.stderr
    catalog_hub.stop()

    env = offline_env(tmp_path / "empty-hf-home", HF_HUB_CACHE=str(cache))
    checked = run_labeler(package, ["verify"], env, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr.count("in the Hugging Face cache match models.lock.json") == 2
    # Only the pinned files were fetched.
    fetched_files = sorted(p.name for p in cache.glob("models--*/snapshots/*/*"))
    assert fetched_files == sorted(name for v in lock["voters"] for name in v["files"])

    output = tmp_path / "labeled.csv"
    done = run_labeler(package, [str(emitted.data), "--output", str(output)], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_csv(output) == read_csv(emitted.raw_output)


def network_cut() -> list[str]:
    """A command prefix that runs its command with no network (a namespace of its own)."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"unshare -n is not available here: {probe.stderr.decode().strip()}")
    return ["unshare", "-n"]


def fresh_venv(folder: Path) -> Path:
    """A new virtual environment whose only extra path is this one's site-packages, for the
    package's dependencies (torch and transformers are not installed again); the package
    itself is installed into it with pip, which must find every pinned requirement met."""
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_installed_with_pip_in_a_fresh_venv_it_labels_with_no_network_like_the_agent(
    emitted: Emitted, tmp_path: Path
):
    cut = network_cut()
    source = private_copy(emitted, tmp_path)
    python = fresh_venv(tmp_path / "venv")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index"]
    install += ["--no-build-isolation", "--no-cache-dir", "--quiet", str(source)]
    subprocess.run(install, check=True, capture_output=True, cwd=tmp_path)
    shutil.rmtree(source)  # nothing is read from the source folder any more
    where = subprocess.run(
        [str(python), "-c", f"import {MODULE}; print({MODULE}.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    installed = Path(where).parent
    assert installed.is_relative_to(tmp_path / "venv")
    assert (installed / "models.lock.json").is_file()

    env = offline_env(tmp_path / "empty-hf-home")
    del env["HF_HUB_OFFLINE"]  # no pretending: the network is gone
    output = tmp_path / "labeled.csv"
    script = tmp_path / "venv" / "bin" / "toxicity-labeler"
    done = subprocess.run(
        [*cut, str(script), str(emitted.data), "--output", str(output), "--progress", "none"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert read_csv(output) == read_csv(emitted.raw_output)
    assert (installed / STAMP).is_file()  # checked once, at the first start of this install
    assert not list((tmp_path / "empty-hf-home").rglob("*.safetensors"))


def build_image(client, context: Path, deps: str, tag: str) -> dict[str, bool]:
    """Build ``context`` offline FROM the dependencies image; each step -> taken from the
    build cache."""
    from tests.support.docker_images import OFFLINE_PIP_ARGS

    _image, log = client.images.build(
        path=str(context),
        tag=tag,
        buildargs={"BASE_IMAGE": deps, "PIP_INSTALL_ARGS": OFFLINE_PIP_ARGS},
        network_mode="none",
        rm=True,
        forcerm=True,
    )
    cached: dict[str, bool] = {}
    step = None
    for line in (entry.get("stream", "") for entry in log):
        if line.startswith("Step "):
            step = line.split(" : ", 1)[1].strip()
            cached[step] = False
        elif "Using cache" in line and step is not None:
            cached[step] = True
    return cached


@pytest.mark.docker
def test_the_image_keeps_weights_in_a_layer_of_their_own_checked_at_build_and_labels_with_no_network(  # noqa: E501
    emitted: Emitted, tmp_path: Path
):
    from tests.sandbox.sandbox_helpers import (
        BASE_IMAGE,
        docker_base_url,
        docker_client_or_skip,
        unique,
    )
    from tests.support.docker_images import dependencies_image

    client = docker_client_or_skip()
    if not client.images.list(name=BASE_IMAGE):
        pytest.fail(f"image {BASE_IMAGE} not found: run scripts/docker-engine.sh")
    deps = dependencies_image(docker_base_url(), BASE_IMAGE)
    package = private_copy(emitted, tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(emitted.data, data / "tweets.csv")
    os.chmod(data, 0o777)  # the image's user, 65534, writes the output here
    tags = [f"{unique('autoannotator-test-weights')}:{n}" for n in (1, 2)]
    try:
        build_image(client, package, deps, tags[0])
        # As its user, with no network: the build's check left a stamp, nothing is hashed.
        logs = client.containers.run(
            tags[0], ["verify"], network_mode="none", remove=True, stdout=False, stderr=True
        ).decode()
        assert logs.count("(the stamp of an earlier check, not hashed again)") == 2, logs
        client.containers.run(
            tags[0],
            ["/data/tweets.csv", "--output", "/data/labeled.csv", "--progress", "none"],
            volumes={str(data): {"bind": "/data", "mode": "rw"}},
            network_mode="none",
            remove=True,
        )
        assert read_csv(data / "labeled.csv") == read_csv(emitted.raw_output)

        # A new round changes code and model card, not the voters: only the code layer builds.
        (package / "README.md").write_text("changed\n", encoding="utf-8")
        steps = build_image(client, package, deps, tags[1])
        requirements = next(s for s in steps if s.startswith("RUN") and "requirements.txt" in s)
        weights = next(s for s in steps if s.startswith(f"COPY {MODULE}/models"))
        code = next(s for s in steps if "--editable" in s)
        assert steps[requirements] and steps[weights] and not steps[code], steps
    finally:
        for tag in reversed(tags):
            if client.images.list(name=tag):
                client.images.remove(tag, force=True)
        client.close()
