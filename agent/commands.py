"""The subcommands besides ``label``, and what every command shares.

``doctor``, ``finetune``, ``cache clear``, ``review export``/``import`` and ``sandbox exec`` live
here; ``register_subcommands`` adds them to the application in ``agent.cli``, after ``label``, so
the order of ``--help`` stays label, doctor, finetune, sandbox, review, cache. ``settings_from``
and ``guarded`` are shared with ``label``: flags become settings with one clear error line, and
an error during a run names the run so it can be resumed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError

from agent.context import RunContext
from agent.errors import AgentError, AwaitingReview, InternalError, UserInputError
from agent.reporting.console import ConsoleReporter
from agent.reporting.summary import summary_json, summary_rows
from agent.settings import Settings, retired_variable
from agent.state import RunOutput
from sandbox import SandboxError

Opt = typer.Option
RunsDirOption = Annotated[
    Path | None, Opt("--runs-dir", help="where run folders live [.autoannotator/runs]")
]

sandbox_app = typer.Typer(help="Run commands the way a labeler is run.", no_args_is_help=True)
review_app = typer.Typer(
    help="Hand the rows awaiting review to a person and read the decisions back.",
    no_args_is_help=True,
)
cache_app = typer.Typer(help="The LLM cache (answers, verdicts, methods).", no_args_is_help=True)


def register_subcommands(app: typer.Typer) -> None:
    app.command("doctor")(doctor_command)
    app.command("finetune")(finetune_command)
    app.add_typer(sandbox_app, name="sandbox")
    app.add_typer(review_app, name="review")
    app.add_typer(cache_app, name="cache")


Outcome = TypeVar("Outcome")


def guarded(call: Callable[[], Outcome], run_id: str) -> Outcome:
    """Run the graph; an error names the run so the user can resume it.

    Our own bugs too: the checkpoint holds every node that finished, so a fixed version (or
    a second try past a transient fault) continues where the run stopped.
    """
    resume = f"[run {run_id}; after fixing, continue with --resume {run_id}]"
    try:
        return call()
    except AwaitingReview as error:
        error.args = (f"{error} [run {run_id}]",)
        raise
    except AgentError as error:
        error.args = (f"{error} {resume}",)
        raise
    except (SandboxError, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - reported once, below, as an internal error
        raise InternalError(f"{type(error).__name__}: {error} {resume}") from error


def settings_from(flags: dict[str, Any]) -> Settings:
    """Settings from environment variables, overridden by the flags that were given."""
    retired = retired_variable()
    if retired is not None:
        raise UserInputError(retired)
    try:
        return Settings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as error:
        problem = error.errors()[0]
        field = str(problem["loc"][0]).replace("_", "-") if problem["loc"] else "settings"
        message = str(problem["msg"]).removeprefix("Value error, ")  # pydantic's prefix
        raise UserInputError(f"--{field}: {message}") from None


def note_package_image(context: RunContext, result: RunOutput, run_dir: Path, run_id: str) -> None:
    """With ``--sandbox docker``: the emitted package's image (built, or found by its content
    address), in the run log and in the run folder (``package-image.json``)."""
    from agent.packaging.image import emitted_package_image, uses_package_images

    if not uses_package_images(context.sandbox) or not result.package_path:
        return
    package = Path(result.package_path)
    try:
        image = emitted_package_image(context.sandbox, package, context.settings, run_dir)
    except AgentError as error:
        error.args = (f"{error} [run {run_id}: the labeled data and {package} are written]",)
        raise
    context.reporter.info(
        f'package image: {image.tag} (docker run --rm --network none -v "$PWD:/data" '
        f"{image.tag} /data/input.csv --output /data/labeled.csv)"
    )


def doctor_command(
    llm_base_url: Annotated[str | None, Opt(help="OpenAI-compatible endpoint to check")] = None,
) -> None:
    """What this machine offers: sandboxes, Docker, GPU, LLM endpoint, Hub."""
    from agent.doctor import run_checks

    settings = settings_from({"llm_base_url": llm_base_url})
    reporter = ConsoleReporter()
    reporter.summary([(check.name, check.line) for check in run_checks(settings)])


def finetune_command(
    run_id: Annotated[str, typer.Argument(help="a finished run whose verified rows to learn from")],
    stages: Annotated[int, Opt(min=1, help="fine-tuning stages to run")] = 1,
    runs_dir: RunsDirOption = None,
    yes: Annotated[bool, Opt("--yes", "-y", help="do not ask before spending")] = False,
    json_summary: Annotated[
        bool, Opt("--json", help="print a JSON summary last, on stdout")
    ] = False,
) -> None:
    """LoRA fine-tune a finished run's voters on its verified rows, relabel, re-emit."""
    from agent.runs import continue_finetuning

    base = settings_from({"runs_dir": runs_dir} if runs_dir else {})
    reporter = ConsoleReporter()
    reporter.stage("finetune", run_id)
    overrides = {"yes": yes or base.yes, "json_summary": json_summary}
    result, context, run_dir = guarded(
        lambda: continue_finetuning(base.runs_dir, run_id, stages, reporter, overrides), run_id
    )
    # The re-emitted package's image (with --sandbox docker), as after the run itself.
    note_package_image(context, result, run_dir, run_id)
    reporter.summary(summary_rows(result))
    if json_summary:
        print(json.dumps(summary_json(result), indent=2))


@cache_app.command("clear")
def cache_clear_command(
    verdict_cache: Annotated[
        Path | None, Opt(help="the cache file [~/.cache/autoannotator-agent/verdicts.sqlite]")
    ] = None,
) -> None:
    """Delete the LLM cache: the next run asks the LLM afresh (and pays again)."""
    from agent.llm.cache import clear_cache

    settings = settings_from({"verdict_cache": verdict_cache})
    removed = clear_cache(settings.verdict_cache)
    where = str(Path(settings.verdict_cache).expanduser())
    print(f"cleared {where}" if removed else f"no cache at {where}", file=sys.stderr)


@review_app.command("export")
def review_export_command(
    run_id: Annotated[str, typer.Argument(help="the run whose hard rows to export")],
    runs_dir: RunsDirOption = None,
    out: Annotated[Path | None, Opt(help="folder for the files [<run folder>/review]")] = None,
) -> None:
    """Write the rows awaiting review as a Label Studio import file and as CSV."""
    from agent.review import export_review, load_run

    base = settings_from({"runs_dir": runs_dir} if runs_dir else {})
    exported = export_review(load_run(base.runs_dir, run_id), out)
    ConsoleReporter().summary(
        [
            ("rows awaiting review", str(exported.rows)),
            ("Label Studio tasks", str(exported.tasks_path)),
            ("Label Studio labeling config", str(exported.config_path)),
            ("CSV (fill in label)", str(exported.csv_path)),
        ]
    )


@review_app.command("import")
def review_import_command(
    run_id: Annotated[str, typer.Argument(help="the run the decisions belong to")],
    file: Annotated[
        Path,
        typer.Argument(
            help="the exported review CSV with label filled in, or a Label Studio export"
        ),
    ],
    runs_dir: RunsDirOption = None,
) -> None:
    """Record a person's decisions and emit the run's labeled data again."""
    from agent.dataset import check_unchanged
    from agent.files import hold_run_folder
    from agent.review import import_review, load_run
    from agent.runs import load_request

    base = settings_from({"runs_dir": runs_dir} if runs_dir else {})
    reporter = ConsoleReporter()
    run_dir, _ = load_request(base.runs_dir, run_id)
    # One writer: a resume going on would write the verdicts back over these decisions.
    with hold_run_folder(run_dir, run_id):
        run = load_run(base.runs_dir, run_id)
        check_unchanged(run.state.dataset, run_id)  # decisions are joined to rows by position
        verification = import_review(run, file, reporter)
    reporter.summary(
        [
            ("verified", str(verification.verified)),
            ("still awaiting review", str(verification.unresolved)),
            ("labeled data", str(run.state.output_path)),
        ]
    )


@sandbox_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def sandbox_exec_command(
    command: Annotated[list[str], typer.Argument(help="command and its arguments, after --")],
    kind: Annotated[str | None, Opt("--sandbox", help="process | docker | none")] = None,
) -> None:
    """Run COMMAND in the sandbox a labeler gets, with the current folder writable."""
    from agent.runs import sandbox_options
    from sandbox import make_sandbox

    settings = settings_from({"sandbox": kind})
    box = make_sandbox(settings.sandbox, **sandbox_options(settings))
    result = box.run(
        command, Path.cwd(), on_output=lambda line: print(line, file=sys.stderr, flush=True)
    )
    sys.stdout.write(result.stdout)
    if result.timed_out:
        raise UserInputError("the command passed the sandbox's wall-time limit")
    if result.killed_for_memory:
        raise UserInputError("the command passed the sandbox's memory limit")
    raise typer.Exit(result.returncode)
