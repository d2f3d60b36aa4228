"""``autoannotator-agent doctor``: what this machine offers a run, and why not.

Each sandbox backend gets the real probe (:mod:`agent.packaging.probe`): the labeler's
interpreter starting, importing torch, reading a mounted input and writing its work folder,
and failing to reach a loopback listener, run through that backend's own ``Sandbox.run``
exactly as a labeler runs. A backend is ``ok`` only if all of that holds, so ``none`` (no
network isolation, by design) is always ``no``, with the reason. The docker backend runs each
package in an image built for it, so its line says whether such images can be built: the
engine, their base image (present, when the probe runs in it, or pullable) and pip's
arguments. Nothing here is cached: the agent's
preflight (:mod:`agent.preflight`) caches, the doctor always looks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from agent.settings import Settings

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    @property
    def line(self) -> str:
        return f"{'ok' if self.ok else 'no'}: {self.detail}"


SANDBOX_BACKENDS = ("bubblewrap", "unshare", "docker", "none")


def run_checks(settings: Settings) -> list[Check]:
    from sandbox.probe import probe_gpu

    checks = [sandbox_check(backend, settings) for backend in SANDBOX_BACKENDS]
    gpu = probe_gpu()
    checks.append(Check(f"sandbox: {gpu.name}", gpu.available, gpu.detail))
    checks.append(_llm_check(settings))
    checks.append(_hub_check(settings))
    return checks


def sandbox_check(backend: str, settings: Settings) -> Check:
    """Whether ``backend`` starts here, then the real probe in it; one line either way."""
    from agent.packaging.probe import probe_sandbox
    from sandbox import SandboxUnavailable, make_sandbox
    from sandbox.isolation import check_bubblewrap, check_unshare

    name = f"sandbox: {backend}"
    if backend == "docker":
        return _docker_check(settings)
    if backend == "none":
        starts, detail, options = True, "", {}
    else:
        starts, detail = check_bubblewrap() if backend == "bubblewrap" else check_unshare()
        options = {"isolation": backend}
    if not starts:
        return Check(name, False, detail)
    try:
        with warnings.catch_warnings():
            # "none" warns that isolation is off; its row says so already.
            warnings.simplefilter("ignore", RuntimeWarning)
            box = make_sandbox("none" if backend == "none" else "process", **options)
    except SandboxUnavailable as error:
        return Check(name, False, str(error))
    probe = probe_sandbox(box, settings)
    if not probe.ok:
        return Check(name, False, probe.detail)
    return Check(name, True, f"{detail}; {probe.detail}" if detail else probe.detail)


def _docker_check(settings: Settings) -> Check:
    """The engine, then the package images' build path: their base image present (the probe
    runs in it) or pullable, and the pip arguments the builds use."""
    from agent.packaging.image import check_build_path, docker_sandbox_options, probe_base_image
    from agent.packaging.probe import probe_sandbox
    from sandbox import SandboxUnavailable, make_sandbox
    from sandbox.probe import probe_docker

    name = "sandbox: docker"
    engine = probe_docker(settings.docker_host, probe_base_image(settings))
    if not engine.available:
        return Check(name, False, engine.detail)
    try:
        box = make_sandbox("docker", **docker_sandbox_options(settings))
    except SandboxUnavailable as error:
        return Check(name, False, str(error))
    build = check_build_path(box.client, settings)  # type: ignore[attr-defined]
    if not build.ok:
        return Check(name, False, f"{engine.detail}; {build.detail}")
    if not build.base_present:
        detail = f"{engine.detail} (the first build pulls it); {build.pip}"
        return Check(name, True, f"package images buildable: {detail}")
    probe = probe_sandbox(box, settings)
    if not probe.ok:
        return Check(name, False, probe.detail)
    detail = f"{engine.detail}; {probe.detail}; {build.pip}"
    return Check(name, True, f"package images buildable: {detail}")


def _llm_check(settings: Settings) -> Check:
    if settings.offline:
        return Check("LLM endpoint", False, "off (--offline)")
    if not settings.llm_configured:
        return Check("LLM endpoint", False, "not configured: set OPENAI_API_KEY or --llm-base-url")
    import httpx

    base = (settings.llm_base_url or "https://api.openai.com/v1").rstrip("/")
    headers = {}
    if settings.llm_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
    try:
        response = httpx.get(f"{base}/models", headers=headers, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as error:
        return Check("LLM endpoint", False, f"{base} unreachable ({type(error).__name__})")
    if response.status_code >= 400:
        return Check("LLM endpoint", False, f"{base} answered HTTP {response.status_code}")
    return Check("LLM endpoint", True, f"{base} ({settings.llm_model})")


def _hub_check(settings: Settings) -> Check:
    if settings.offline:
        return Check("Hugging Face Hub", False, "off (--offline)")
    import httpx
    from huggingface_hub import constants

    endpoint = (settings.hf_endpoint or constants.ENDPOINT).rstrip("/")
    try:
        response = httpx.get(f"{endpoint}/api/models", params={"limit": 1}, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError as error:
        return Check("Hugging Face Hub", False, f"{endpoint} unreachable ({type(error).__name__})")
    ok = response.status_code < 400
    detail = endpoint if ok else f"{endpoint} answered HTTP {response.status_code}"
    return Check("Hugging Face Hub", ok, detail)
