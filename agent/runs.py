"""Starting and resuming runs: the run folder, its saved request, the graph invocation.

Everything a run writes lives in ``<runs dir>/<run id>/``. The input is
validated before that folder exists, so bad input leaves nothing behind. The
request (task, data, settings without secrets) is saved there, so
``--resume RUN_ID`` continues with exactly the settings the run started with.

A run is bound to its input: ``--resume`` and ``finetune`` refuse a data file whose size or
sha256 differs from the one the run started with (verdicts are joined to rows by position),
and each holds the run folder's lock (:func:`agent.files.hold_run_folder`) while it works.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.context import Reporter, RunContext
from agent.dataset import check_unchanged, inspect_dataset
from agent.discovery.vetting import check_model_reference
from agent.errors import RunStateError
from agent.files import hold_run_folder, write_text_atomically
from agent.graph import CHECKPOINTS, compile_graph
from agent.hub.client import HfHub
from agent.llm.batch import BatchClient, OpenAIBatchClient
from agent.llm.cache import CachedLanguageModel, ResponseCache
from agent.llm.client import OpenAIChatModel
from agent.packaging.image import docker_sandbox_options
from agent.preflight import preflight
from agent.settings import Settings
from agent.state import DatasetInfo, RunInput, RunOutput

REQUEST_FILE = "request.json"
RECURSION_LIMIT = 50


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def sandbox_options(settings: Settings, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Keyword arguments of ``make_sandbox(settings.sandbox, ...)`` beyond its defaults
    (``log``: where the Docker sandbox notes the package images it builds)."""
    if settings.sandbox != "docker":
        return {}
    return docker_sandbox_options(settings, log)


def default_context(settings: Settings, reporter: Reporter) -> RunContext:
    """The real clients, built from settings (tests inject their own)."""
    from sandbox import make_sandbox

    llm = None
    batch: BatchClient | None = None
    if settings.llm_configured:
        cache = ResponseCache(settings.verdict_cache) if settings.llm_cache else None
        llm = chat = OpenAIChatModel(
            settings.llm_model,
            api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            base_url=settings.llm_base_url,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
            method=settings.llm_structured_method,
            memory=cache,
        )
        if settings.llm_batch:
            batch = OpenAIBatchClient(chat, settings.llm_batch_poll_s)
        if cache is not None:
            llm = CachedLanguageModel(llm, cache)
    hub = None if settings.offline else HfHub(settings.hf_endpoint)
    return RunContext(
        settings=settings,
        sandbox=make_sandbox(settings.sandbox, **sandbox_options(settings, reporter.info)),
        reporter=reporter,
        llm=llm,
        batch=batch,
        hub=hub,
    )


def check_llm_endpoint(context: RunContext) -> None:
    """A cheap first request to the LLM endpoint (a model listing, no tokens), before the run
    starts: a wrong key or a base URL that is no OpenAI-compatible endpoint is a user error, and
    so is ``--llm-batch`` with an endpoint that has no Batch API (a free ``GET /batches``)."""
    if context.llm is not None:
        context.llm.check_endpoint()
    if context.batch is not None:
        context.batch.check()


def _config(run_id: str) -> dict:
    return {"configurable": {"thread_id": run_id}, "recursion_limit": RECURSION_LIMIT}


def prepare_run(task: str, data: Path, settings: Settings) -> RunInput:
    """Validate the input, then create the run folder and save the request."""
    if not task.strip():
        from agent.errors import UserInputError

        raise UserInputError("the task description is empty")
    dataset = inspect_dataset(data, settings.text_column)
    for reference in settings.models:
        check_model_reference(reference)
    run_id = new_run_id()
    run_dir = Path(settings.runs_dir).resolve() / run_id
    run_dir.mkdir(parents=True)
    request = {
        "task": task,
        "data": dataset.path,
        "dataset": dataset.model_dump(mode="json"),
        "settings": settings.model_dump(mode="json", exclude={"llm_api_key"}),
    }
    write_text_atomically(run_dir / REQUEST_FILE, json.dumps(request, indent=2) + "\n")
    return RunInput(
        task=task,
        data_path=dataset.path,
        dataset=dataset,
        run_id=run_id,
        run_dir=str(run_dir),
        started_at=time.time(),
    )


def execute(run: RunInput | None, run_id: str, run_dir: Path, context: RunContext) -> RunOutput:
    """Invoke the graph: a fresh run when ``run`` is given, else continue the checkpoint.

    The run folder is held for the whole invocation: a second writer is refused. A resumed
    run's input must be the file it started with. The sandbox is probed first
    (:func:`agent.preflight.preflight`): a broken one stops the run before anything is
    checkpointed. A run stopped before its first checkpoint (by the probe, or interrupted)
    starts again from its saved request.
    """
    with hold_run_folder(run_dir, run_id):
        if run is None:
            run = resumed_input(run_dir, run_id, context.settings)
        preflight(context, run_dir)
        result = compile_graph(run_dir).invoke(run, _config(run_id), context=context)
    return RunOutput.model_validate(result)


def resumed_input(run_dir: Path, run_id: str, settings: Settings) -> RunInput | None:
    """What a resumed run starts from: None to continue its checkpoint (one this graph can
    continue, of the input file as it was), else the input of its saved request."""
    if (run_dir / CHECKPOINTS).exists():
        graph = compile_graph(run_dir)
        snapshot = graph.get_state(_config(run_id))
        if snapshot.values:
            check_resumable(snapshot, graph, run_id)
            check_unchanged(DatasetInfo.model_validate(snapshot.values["dataset"]), run_id)
            return None
    return saved_input(run_dir, run_id, settings)


def check_resumable(snapshot, graph, run_id: str) -> None:
    """Refuse a checkpoint this graph cannot continue: one written by an earlier version,
    which waits at a node that no longer exists or passed the pilot without the records
    (``pilot_run``) the routers now decide from."""
    values = snapshot.values
    unknown = [name for name in snapshot.next if name not in graph.nodes]
    if unknown or (values.get("pilot") is not None and values.get("pilot_run") is None):
        raise RunStateError(
            f"run {run_id} was checkpointed by an earlier version of the agent and cannot be "
            "resumed or continued: start it again"
        )


def saved_input(run_dir: Path, run_id: str, settings: Settings) -> RunInput:
    """The input of a run that has no checkpoint yet, from its saved request (refused when
    the data file is not the one the run started with)."""
    try:
        request = json.loads((run_dir / REQUEST_FILE).read_text(encoding="utf-8"))
        task, data = request["task"], Path(request["data"])
        recorded = request.get("dataset")
        started = None if recorded is None else DatasetInfo.model_validate(recorded)
    except (OSError, ValueError, KeyError) as error:
        raise RunStateError(f"run {run_id}: unreadable {REQUEST_FILE} ({error})") from None
    if started is not None:
        check_unchanged(started, run_id)
    dataset = inspect_dataset(data, settings.text_column)
    return RunInput(
        task=task, data_path=dataset.path, dataset=dataset, run_id=run_id, run_dir=str(run_dir)
    )


def load_request(runs_dir: Path, run_id: str) -> tuple[Path, Settings]:
    """The run folder and the settings a run started with (secrets from the environment)."""
    run_dir = Path(runs_dir).resolve() / run_id
    request_path = run_dir / REQUEST_FILE
    if not request_path.is_file():
        raise RunStateError(f"no run {run_id!r} in {runs_dir}")
    try:
        request = json.loads(request_path.read_text(encoding="utf-8"))
        settings = Settings(**request["settings"])
    except (ValueError, KeyError) as error:
        raise RunStateError(f"run {run_id}: unreadable {REQUEST_FILE} ({error})") from None
    return run_dir, settings


def continue_finetuning(
    runs_dir: Path, run_id: str, stages: int, reporter: Reporter, overrides: dict[str, Any]
) -> tuple[RunOutput, RunContext, Path]:
    """Run ``stages`` more fine-tuning stages on a finished run, then relabel and re-emit;
    the outcome, the context it ran in and the run's folder.

    The run's saved request is updated first, so an interruption continues with
    ``--resume`` like any other run.
    """
    run_dir, settings = load_request(runs_dir, run_id)
    with hold_run_folder(run_dir, run_id):
        return _continue_finetuning(run_dir, settings, run_id, stages, reporter, overrides)


def _continue_finetuning(
    run_dir: Path,
    settings: Settings,
    run_id: str,
    stages: int,
    reporter: Reporter,
    overrides: dict[str, Any],
) -> tuple[RunOutput, RunContext, Path]:
    from langgraph.types import Command

    from agent.errors import UserInputError
    from agent.learning import finetune_blocker
    from agent.state import RunState

    graph = compile_graph(run_dir)
    snapshot = graph.get_state(_config(run_id))
    if not snapshot.values or snapshot.next:
        raise RunStateError(f"run {run_id} has not finished: continue it with --resume {run_id}")
    check_resumable(snapshot, graph, run_id)
    state = RunState.model_validate(snapshot.values)
    check_unchanged(state.dataset, run_id)
    settings = settings.model_copy(
        update={"finetune_stages": len(state.finetune) + stages} | overrides
    )
    blocker = finetune_blocker(state, settings)
    if blocker is not None:
        raise UserInputError(f"run {run_id} cannot be fine-tuned: {blocker}")
    context = default_context(settings, reporter)
    preflight(context, run_dir)  # before the request changes: a broken sandbox changes nothing
    request_path = run_dir / REQUEST_FILE
    request = json.loads(request_path.read_text(encoding="utf-8"))
    request["settings"] = settings.model_dump(mode="json", exclude={"llm_api_key"})
    write_text_atomically(request_path, json.dumps(request, indent=2) + "\n")
    result = graph.invoke(Command(goto="finetune_voters"), _config(run_id), context=context)
    return RunOutput.model_validate(result), context, run_dir
