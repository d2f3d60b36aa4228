"""``<labeler> serve``: label over HTTP, with the batch command's voters and answers.

Listens on 127.0.0.1 unless ``--host`` says otherwise. ``POST /v1/label`` takes
``{"texts": [...]}`` or ``{"records": [...]}`` and answers what the batch command writes for
those rows; rows of concurrent requests share model batches (``--max-batch-rows``,
``--max-wait-ms``). ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus), ``/openapi.json``
and ``/docs`` describe it. SIGTERM or SIGINT stop it gracefully: no new connection is
taken, every accepted request is answered, then it exits 0.

Exit status: 0 after a graceful stop, 2 for bad options or an address it cannot listen on,
1 when the voters cannot be loaded. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import socket
import sys
from typing import Any

import uvicorn

from .commands import PACKAGE_ROOT, load_spec, resolve_device
from .config import LabelerSpec
from .engine import Labeler
from .precision import DEFAULT_QUANTIZE, QUANTIZE_MODES
from .serve_app import ServeSettings, Service
from .serve_requests import Limits
from .voters import Runtime, VoterLoadError

FILE_ONLY_MODES = ("auto", "measure")
"""``--quantize`` modes that measure on a file's rows: a service has no file."""


class OptionError(ValueError):
    """Options that only show they cannot go together once the device is known."""


def build_parser(spec: LabelerSpec) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{spec.name} serve", description=f"Label over HTTP for this task: {spec.task}"
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=8000, help="port to listen on (0: any free port)")
    add("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add("--batch-size", type=int, default=32, help="rows per forward pass of a voter")
    add(
        "--quantize",
        choices=[mode for mode in QUANTIZE_MODES if mode not in FILE_ONLY_MODES],
        default=DEFAULT_QUANTIZE,
        help="CPU precision of the transformer voters, as for the batch command",
    )
    add("--text-column", default=spec.text_column, help="the field of a record holding its text")
    add("--min-agreement", type=float, default=spec.min_agreement)
    add("--min-confidence", type=float, default=spec.min_confidence)
    add("--max-batch-rows", type=int, default=64, help="rows in one model batch at most")
    add(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long the oldest queued row waits for others to share its batch",
    )
    add("--max-queue-rows", type=int, default=2048, help="rows queued at most; then 503")
    add("--max-texts", type=int, default=256, help="texts (or records) per request at most")
    add("--max-text-chars", type=int, default=10_000, help="characters per text at most")
    add("--access-log", action="store_true", help="log every request on stderr")
    return parser


def flag_error(args: argparse.Namespace) -> str | None:
    """Why the options cannot work, or None."""
    counts = ("batch_size", "max_batch_rows", "max_queue_rows", "max_texts", "max_text_chars")
    small = [name for name in counts if getattr(args, name) < 1]
    if small:
        return f"--{small[0].replace('_', '-')} must be at least 1"
    if args.max_wait_ms < 0:
        return "--max-wait-ms must not be negative"
    if args.max_texts > args.max_queue_rows:
        return "--max-texts must not exceed --max-queue-rows (such a request could never queue)"
    if not 0 <= args.port <= 65535:
        return "--port must be between 0 and 65535"
    return None


def settings_of(args: argparse.Namespace) -> ServeSettings:
    # Room for every text escaped as \uXXXX, plus each record's other fields.
    body_bytes = args.max_texts * (6 * args.max_text_chars + 1024) + 65536
    package = importlib.import_module(__package__)
    return ServeSettings(
        text_column=args.text_column,
        min_agreement=args.min_agreement,
        min_confidence=args.min_confidence,
        max_batch_rows=args.max_batch_rows,
        max_wait=args.max_wait_ms / 1000,
        max_queue_rows=args.max_queue_rows,
        limits=Limits(args.max_texts, args.max_text_chars, body_bytes),
        version=str(getattr(package, "__version__", "0")),
    )


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; OSError when the address cannot be had."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return socket.create_server((host, port), family=family[0][0], backlog=2048)


def address_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def load_labeler(spec: LabelerSpec, args: argparse.Namespace, loaded: dict[str, Any]):
    """What the worker thread runs first: the voters, at the precision the batch command
    would apply."""

    def load() -> Labeler:
        device = resolve_device(args.device)
        if args.quantize == "int8" and device != "cpu":
            raise OptionError("--quantize int8 runs on CPU only (CUDA uses bf16)")
        labeler = Labeler(spec, Runtime(PACKAGE_ROOT, device, args.batch_size), args.quantize)
        labeler.settle_precision([])
        loaded["labeler"] = labeler
        return labeler

    return load


class Server(uvicorn.Server):
    """uvicorn's server, told how the voters' loading went."""

    exit_code = 0

    def load_failed(self, error: BaseException) -> None:
        known = isinstance(error, VoterLoadError | OptionError)
        message = str(error) if known else f"the voters cannot be loaded: {error!r}"
        print(f"error: {message}", file=sys.stderr, flush=True)
        self.exit_code = 2 if isinstance(error, OptionError) else 1
        self.should_exit = True


def run(server: Server, sock: socket.socket) -> int:
    """Serve until a signal (or a failed load) stops it; the exit status."""
    # uvicorn raises the signal that stopped it again once it is done: a handler of ours
    # keeps that from killing the process after a graceful stop.
    previous = {
        number: signal.signal(number, lambda *_: None) for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        server.run(sockets=[sock])
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        sock.close()
    if server.exit_code == 0 and not server.started:
        print("error: the service could not start", file=sys.stderr)
        return 1
    return server.exit_code


def main(argv: list[str] | None = None) -> int:
    """``<labeler> serve ARGS``; ``argv`` holds ARGS (None: the process's own, after ``serve``)."""
    argv = sys.argv[2:] if argv is None else argv
    spec = load_spec()
    args = build_parser(spec).parse_args(argv)
    error = flag_error(args)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        sock = listen(args.host, args.port)
    except OSError as failure:
        reason = os.strerror(failure.errno) if failure.errno else str(failure)
        print(f"error: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 2
    loaded: dict[str, Any] = {}

    def ready(seconds: float) -> None:
        precisions = loaded["labeler"].precisions()
        voters = ", ".join(f"{name} ({precision})" for name, precision in precisions.items())
        print(f"ready in {seconds:.1f} s: {voters}", file=sys.stderr, flush=True)

    service = Service(
        spec,
        settings_of(args),
        load_labeler(spec, args, loaded),
        on_load_error=lambda failure: server.load_failed(failure),
        on_ready=ready,
    )
    config = uvicorn.Config(
        service.app(), log_level="warning", access_log=args.access_log, lifespan="on"
    )
    server = Server(config)
    print(
        f"serving {spec.name} on {address_of(sock)} (loading the voters: /readyz says when "
        "they are ready)",
        file=sys.stderr,
        flush=True,
    )
    code = run(server, sock)
    if code == 0:
        answered = int(sum(service.metrics.requests.values.values()))
        print(f"stopped after answering {answered} label requests", file=sys.stderr)
    return code
