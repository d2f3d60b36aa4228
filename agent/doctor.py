"""``autoannotator-agent doctor``: what this machine offers a run, and why not."""

from __future__ import annotations

from dataclasses import dataclass

from .settings import Settings

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    @property
    def line(self) -> str:
        return f"{'ok' if self.ok else 'no'}: {self.detail}"


def run_checks(settings: Settings) -> list[Check]:
    from sandbox.probe import probe_backends

    checks = [
        Check(f"sandbox: {status.name}", status.available, status.detail)
        for status in probe_backends(settings.docker_host, settings.docker_image)
    ]
    checks.append(_llm_check(settings))
    checks.append(_hub_check(settings))
    return checks


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
