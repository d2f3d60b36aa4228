"""A labeler package's ``serve`` command, run for real in its own process, and a small client.

:class:`ServedLabeler` starts ``python -m <module> serve --port 0 ...`` with the package on
``PYTHONPATH``, reads the address the service prints, and waits for ``/readyz``; the client
functions speak plain HTTP with the standard library, so what is tested is the wire.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ADDRESS = re.compile(r"serving \S+ on (http://\S+) ")


class ServedLabeler:
    """The service of the package ``root/module``, in a subprocess."""

    def __init__(self, root: Path, module: str, *options: str, ready: bool = True) -> None:
        command = [sys.executable, "-m", module, "serve", "--port", "0", *options]
        env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(
            command, cwd=root, env=env, stderr=subprocess.PIPE, text=True, encoding="utf-8"
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self._address()
        if ready:
            self.wait_ready()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def _address(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = ADDRESS.search(line)
                if found:
                    return found.group(1)
            if self.process.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"serve exited {self.process.returncode}:\n{self.stderr}")
            time.sleep(0.05)
        raise AssertionError(f"serve printed no address:\n{self.stderr}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if get(self.url + "/readyz")[0] == 200:
                return
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited {self.process.returncode}:\n{self.stderr}")
            time.sleep(0.1)
        raise AssertionError(f"serve not ready after {timeout} s:\n{self.stderr}")

    def signal(self, number: int = signal.SIGTERM) -> None:
        self.process.send_signal(number)

    def wait(self, timeout: float = 60.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)


def request(
    method: str,
    url: str,
    body: bytes | None = None,
    timeout: float = 120.0,
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP request."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    prepared = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(prepared, timeout=timeout) as response:
            status, found, content = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, found, content = error.code, error.headers, error.read()
    return status, {name.lower(): value for name, value in found.items()}, content


def get(url: str) -> tuple[int, bytes]:
    try:
        status, _, content = request("GET", url, timeout=10)
    except OSError:
        return 0, b""
    return status, content


def post_json(url: str, payload: Any) -> tuple[int, dict[str, str], Any]:
    """POST ``payload`` as JSON; status, headers and the decoded answer."""
    status, headers, content = request("POST", url, json.dumps(payload).encode("utf-8"))
    return status, headers, json.loads(content)


def label(url: str, texts: list[str]) -> list[dict[str, Any]]:
    status, _, answer = post_json(url + "/v1/label", {"texts": texts})
    assert status == 200, answer
    return answer["results"]


def metrics(url: str) -> dict[str, Any]:
    """``/metrics`` parsed with prometheus_client's parser: family name -> family."""
    from prometheus_client.parser import text_string_to_metric_families

    status, content = get(url + "/metrics")
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(content.decode())}


def sample(families: dict[str, Any], family: str, name: str, **labels: str) -> float:
    """The value of one sample of a parsed family (0 when absent)."""
    for found in families[family].samples:
        if found.name == name and found.labels == labels:
            return found.value
    return 0.0
