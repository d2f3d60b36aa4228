"""The Locust users of ``benchmarks/serve.py`` (run by ``locust -f``, in its own process).

Each user is one client in a closed loop: it posts ``SERVE_BENCH_PER_REQUEST`` texts from the
JSON list in ``SERVE_BENCH_TEXTS`` to ``/v1/label``, waits for the answer, and posts again.
A 503 (shed by the service) counts as a failure named ``503``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

TEXTS: list[str] = json.loads(Path(os.environ["SERVE_BENCH_TEXTS"]).read_text(encoding="utf-8"))
PER_REQUEST = int(os.environ.get("SERVE_BENCH_PER_REQUEST", "1"))


class LabelingClient(FastHttpUser):
    wait_time = constant(0)
    network_timeout = 600.0
    connection_timeout = 600.0
    started = 0

    def on_start(self) -> None:
        LabelingClient.started += 1
        self.position = (LabelingClient.started * 7919) % len(TEXTS)

    @task
    def label(self) -> None:
        texts = [TEXTS[(self.position + i) % len(TEXTS)] for i in range(PER_REQUEST)]
        self.position += PER_REQUEST
        with self.client.post(
            "/v1/label", json={"texts": texts}, catch_response=True, name="/v1/label"
        ) as response:
            if response.status_code == 200 and len(response.json()["results"]) == len(texts):
                response.success()
            elif response.status_code == 503:
                response.failure("503")
            else:
                response.failure(f"status {response.status_code}")
