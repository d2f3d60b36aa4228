"""Command line: ``autoannotator-agent TASK --data FILE`` and its subcommands.

Exit status: 0 on success, 2 on bad usage or bad input (one clear line, no
traceback), 1 on internal errors. Human output goes to stderr; ``--json``
prints a machine-readable summary last, on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from agent import __version__
from agent.errors import AgentError, InternalError, UserInputError
from agent.reporting.console import ConsoleReporter
from agent.settings import Settings
from agent.state import RunOutput
from sandbox import SandboxError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="An LLM orchestrates small classifiers to label text and verifies their disagreements.",
)
sandbox_app = typer.Typer(help="Run commands the way a labeler is run.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
review_app = typer.Typer(
    help="Hand the rows awaiting review to a person and read the decisions back.",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")
cache_app = typer.Typer(help="The LLM cache (answers, verdicts, methods).", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

SUBCOMMANDS = {
    "label", "doctor", "sandbox", "review", "finetune", "cache", "--help", "-h", "--version"
}  # fmt: skip

Opt = typer.Option


@app.command("label")
def label_command(
    task: Annotated[str | None, typer.Argument(help='e.g. "label tweets for toxicity"')] = None,
    data: Annotated[Path | None, Opt("--data", help="CSV, TSV, JSON Lines or Parquet")] = None,
    text_column: Annotated[str | None, Opt(help="column holding the text")] = None,
    labels: Annotated[
        str | None, Opt(help="labels, comma-separated (overrides the planner)")
    ] = None,
    model: Annotated[
        list[str] | None,
        Opt("--model", help="voter: Hub id or local folder (repeatable; skips discovery)"),
    ] = None,
    out: Annotated[Path | None, Opt(help="folder for the labeler package [generated/]")] = None,
    output: Annotated[Path | None, Opt(help="labeled data file (.csv, .jsonl, .parquet)")] = None,
    offline: Annotated[bool, Opt("--offline", help="no Hub, no LLM")] = False,
    llm_model: Annotated[str | None, Opt(help="LLM model name")] = None,
    llm_base_url: Annotated[
        str | None, Opt(help="OpenAI-compatible endpoint; key from OPENAI_API_KEY")
    ] = None,
    llm_structured_method: Annotated[
        str | None,
        Opt(help="auto | json_schema | function_calling | json_mode | text [auto: negotiated]"),
    ] = None,
    llm_cache: Annotated[
        bool | None,
        Opt("--llm-cache/--no-llm-cache", help="reuse cached LLM answers and verdicts [on]"),
    ] = None,
    verifier: Annotated[str | None, Opt(help="llm | human | column:NAME | none")] = None,
    sandbox: Annotated[str | None, Opt(help="process | docker | none")] = None,
    min_agreement: Annotated[
        float | None, Opt(help="rows with a lower winning vote share are disagreements [1.0]")
    ] = None,
    min_confidence: Annotated[
        float | None,
        Opt(help="rows whose winning label has a lower mean voter probability too [0]"),
    ] = None,
    max_verified: Annotated[
        str | None,
        Opt(help="verify at most N rows or P% of them, least confident first [all disputed]"),
    ] = None,
    learn_vote: Annotated[
        bool | None,
        Opt("--learn-vote/--no-learn-vote", help="learn vote weights from verified rows [on]"),
    ] = None,
    voters: Annotated[int | None, Opt(help="voters discovery keeps [3]")] = None,
    pilot_rows: Annotated[int | None, Opt(help="pilot sample size [200]")] = None,
    pilot_verify: Annotated[
        int | None,
        Opt(
            "--pilot-verify",
            "--pilot-verify-rows",
            help="pilot rows verified to score candidates (kept as verified rows; 0: none) [50]",
        ),
    ] = None,
    batch_size: Annotated[int | None, Opt(help="rows per model batch [32]")] = None,
    device: Annotated[str | None, Opt(help="auto | cpu | cuda")] = None,
    runs_dir: Annotated[
        Path | None, Opt(help="where run folders live [.autoannotator/runs]")
    ] = None,
    resume: Annotated[str | None, Opt("--resume", help="continue an interrupted run")] = None,
    budget_usd: Annotated[
        float | None, Opt(help="ask before LLM verification expected to cost more [5.0]")
    ] = None,
    max_cost_usd: Annotated[
        float | None, Opt(help="hard cap on LLM cost; rows past it go to review")
    ] = None,
    judge_batch_size: Annotated[int | None, Opt(help="disagreement rows per LLM call [50]")] = None,
    llm_concurrency: Annotated[int | None, Opt(help="LLM calls in flight at once [4]")] = None,
    verdict_cache: Annotated[
        Path | None, Opt(help="SQLite cache of LLM verdicts [~/.cache/autoannotator-agent]")
    ] = None,
    finetune_stages: Annotated[
        int | None,
        Opt(help="rounds of verify -> LoRA fine-tune -> relabel, each gated on held-out rows [0]"),
    ] = None,
    yes: Annotated[bool, Opt("--yes", "-y", help="do not ask before spending")] = False,
    json_summary: Annotated[
        bool, Opt("--json", help="print a JSON summary last, on stdout")
    ] = False,
) -> None:
    """Label a data set and emit a reproducible labeler package."""
    from agent.runs import check_llm_endpoint, default_context, execute, load_request, prepare_run

    flags = {
        "text_column": text_column,
        "labels": labels,
        "models": tuple(model) if model else None,
        "out": out,
        "output": output,
        "offline": offline or None,
        "llm_model": llm_model,
        "llm_base_url": llm_base_url,
        "llm_structured_method": llm_structured_method,
        "llm_cache": llm_cache,
        "verifier": verifier,
        "sandbox": sandbox,
        "min_agreement": min_agreement,
        "min_confidence": min_confidence,
        "max_verified": max_verified,
        "learn_vote": learn_vote,
        "voters": voters,
        "pilot_rows": pilot_rows,
        "pilot_verify_rows": pilot_verify,
        "batch_size": batch_size,
        "device": device,
        "runs_dir": runs_dir,
        "budget_usd": budget_usd,
        "max_cost_usd": max_cost_usd,
        "judge_batch_size": judge_batch_size,
        "llm_concurrency": llm_concurrency,
        "verdict_cache": verdict_cache,
        "finetune_stages": finetune_stages,
        "yes": yes or None,
        "json_summary": json_summary or None,
    }
    reporter = ConsoleReporter()
    if resume:
        base = settings_from({"runs_dir": runs_dir} if runs_dir else {})
        run_dir, settings = load_request(base.runs_dir, resume)
        spending = {"budget_usd": budget_usd, "max_cost_usd": max_cost_usd}
        settings = settings.model_copy(
            update={"yes": yes or settings.yes, "json_summary": json_summary}
            | {name: value for name, value in spending.items() if value is not None}
        )
        context = default_context(settings, reporter)
        check_llm_endpoint(context)
        reporter.stage("resume", resume)
        result = _guarded(lambda: execute(None, resume, run_dir, context), resume)
    else:
        if not task or data is None:
            raise UserInputError("give a TASK and --data FILE (or --resume RUN_ID)")
        settings = settings_from(flags)
        context = default_context(settings, reporter)
        check_llm_endpoint(context)  # before the run folder exists: a wrong key leaves nothing
        run = prepare_run(task, data, settings)
        reporter.stage("run", f"{run.run_id} ({run.run_dir})")
        result = _guarded(lambda: execute(run, run.run_id, Path(run.run_dir), context), run.run_id)
    reporter.summary(summary_rows(result))
    if settings.json_summary:
        print(json.dumps(summary_json(result), indent=2))


def _guarded(call, run_id: str) -> RunOutput:
    """Run the graph; an error names the run so the user can resume it.

    Our own bugs too: the checkpoint holds every node that finished, so a fixed version (or
    a second try past a transient fault) continues where the run stopped.
    """
    resume = f"[run {run_id}; after fixing, continue with --resume {run_id}]"
    try:
        return call()
    except AgentError as error:
        error.args = (f"{error} {resume}",)
        raise
    except (SandboxError, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - reported once, below, as an internal error
        raise InternalError(f"{type(error).__name__}: {error} {resume}") from error


def settings_from(flags: dict[str, Any]) -> Settings:
    """Settings from environment variables, overridden by the flags that were given."""
    try:
        return Settings(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as error:
        problem = error.errors()[0]
        field = str(problem["loc"][0]).replace("_", "-") if problem["loc"] else "settings"
        raise UserInputError(f"--{field}: {problem['msg']}") from None


def summary_json(result: RunOutput) -> dict[str, Any]:
    labeling, verification = result.labeling, result.verification
    return {
        "package": result.package_path,
        "output": result.output_path,
        "rows": labeling.rows if labeling else 0,
        "disagreements": labeling.disagreements if labeling else 0,
        "escalations": {
            "verifier": verification.verifier if verification else None,
            "verified": verification.verified if verification else 0,
            "unresolved": verification.unresolved if verification else 0,
            "review_file": verification.review_path if verification else None,
        },
        "llm": {
            "calls": verification.llm_calls if verification else 0,
            "prompt_tokens": verification.prompt_tokens if verification else 0,
            "completion_tokens": verification.completion_tokens if verification else 0,
            "cost_usd": verification.cost_usd if verification else 0.0,
        },
        "voters": [voter.ref for voter in result.voters],
        "labels": list(result.plan.label_names) if result.plan else [],
        "finetune": [stage.model_dump(mode="json") for stage in result.finetune],
        "votes": [vote.model_dump(mode="json") for vote in result.votes],
    }


def summary_rows(result: RunOutput) -> list[tuple[str, str]]:
    data = summary_json(result)
    escalations, llm = data["escalations"], data["llm"]
    rows = [
        ("labels", ", ".join(data["labels"])),
        ("voters", ", ".join(data["voters"])),
        ("rows", str(data["rows"])),
        ("disagreements", str(data["disagreements"])),
        ("verified", f"{escalations['verified']} by {escalations['verifier'] or '-'}"),
        ("unresolved", str(escalations["unresolved"])),
        (
            "LLM calls / tokens",
            f"{llm['calls']} / {llm['prompt_tokens'] + llm['completion_tokens']}",
        ),
        ("LLM cost", f"${llm['cost_usd']:.4f}"),
        ("labeled data", str(data["output"])),
        ("labeler package", str(data["package"])),
    ]
    if escalations["review_file"]:
        rows.append(("review file", escalations["review_file"]))
    for stage in result.finetune:
        tuned = ", ".join(
            f"{v.voter} {v.version or 'rolled back'} "
            f"(held-out {v.holdout_before:.1%} -> {v.holdout_after:.1%})"
            for v in stage.voters
        )
        after = "?" if stage.escalated_after is None else str(stage.escalated_after)
        rows.append(
            (
                f"fine-tuning stage {stage.stage}",
                f"{stage.verified_rows} verified rows; disputes {stage.escalated_before} -> "
                f"{after}; {tuned}",
            )
        )
    for vote in result.votes:
        weights = ", ".join(f"{name} {weight:.2f}" for name, weight in vote.weights.items())
        outcome = "used" if vote.adopted else "plain vote kept"
        rows.append(
            (
                f"learned vote {vote.version}",
                f"{outcome} from pass {vote.before_pass}: {weights}; "
                f"{vote.cross_validated_accuracy:.1%} vs {vote.plain_vote_accuracy:.1%} on "
                f"{vote.examples} verified rows",
            )
        )
    return rows


@app.command("doctor")
def doctor_command(
    llm_base_url: Annotated[str | None, Opt(help="OpenAI-compatible endpoint to check")] = None,
) -> None:
    """What this machine offers: sandboxes, Docker, GPU, LLM endpoint, Hub."""
    from agent.doctor import run_checks

    settings = settings_from({"llm_base_url": llm_base_url})
    reporter = ConsoleReporter()
    reporter.summary([(check.name, check.line) for check in run_checks(settings)])


RunsDirOption = Annotated[
    Path | None, Opt("--runs-dir", help="where run folders live [.autoannotator/runs]")
]


@app.command("finetune")
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
    result = _guarded(
        lambda: continue_finetuning(base.runs_dir, run_id, stages, reporter, overrides), run_id
    )
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
    file: Annotated[Path, typer.Argument(help="review CSV (row,label) or Label Studio JSON")],
    runs_dir: RunsDirOption = None,
) -> None:
    """Record a person's decisions and emit the run's labeled data again."""
    from agent.review import import_review, load_run

    base = settings_from({"runs_dir": runs_dir} if runs_dir else {})
    reporter = ConsoleReporter()
    run = load_run(base.runs_dir, run_id)
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


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        print(f"autoannotator-agent {__version__}")
        return 0
    if args and args[0] not in SUBCOMMANDS:
        args = ["label", *args]
    try:
        app(args, prog_name="autoannotator-agent", standalone_mode=False)
    except typer.Exit as done:
        return done.exit_code
    except typer.TyperException as error:
        print(f"error: {error.format_message()}", file=sys.stderr)
        return 2 if error.exit_code == 2 else 1
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except InternalError as error:
        if os.environ.get("AUTOANNOTATOR_DEBUG"):
            traceback.print_exception(error.__cause__ or error)
        print(
            f"internal error: {error} (set AUTOANNOTATOR_DEBUG=1 for a traceback)", file=sys.stderr
        )
        return error.exit_code
    except AgentError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except SandboxError as error:
        print(f"error: sandbox: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; continue with --resume RUN_ID", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if os.environ.get("AUTOANNOTATOR_DEBUG"):
            traceback.print_exc()
        print(
            f"internal error: {type(error).__name__}: {error} "
            "(set AUTOANNOTATOR_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1
    return 0
