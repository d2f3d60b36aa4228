"""Command line: ``autoannotator-agent TASK --data FILE`` and its subcommands.

Exit status: 0 on success, 2 on bad usage or bad input (one clear line, no
traceback), 1 on internal errors. Human output goes to stderr; ``--json``
prints a machine-readable summary last, on stdout. This module holds the
application, the main ``label`` command and ``main``, which turns every error
into that one line; the other subcommands are in ``agent.commands``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer

from agent import __version__
from agent.commands import Opt, guarded, note_package_image, register_subcommands, settings_from
from agent.errors import AgentError, InternalError, UserInputError
from agent.reporting.console import ConsoleReporter
from agent.reporting.summary import summary_json, summary_rows
from agent.settings import Settings
from agent.state import RunOutput
from sandbox import SandboxError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="An LLM orchestrates small classifiers to label text and verifies their disagreements.",
)

SUBCOMMANDS = {
    "label", "doctor", "sandbox", "review", "finetune", "cache", "--help", "-h", "--version"
}  # fmt: skip


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
    llm_batch: Annotated[
        bool,
        Opt("--llm-batch", help="verify through the OpenAI Batch API (half price, within 24h)"),
    ] = False,
    verifier: Annotated[str | None, Opt(help="llm | human | column:NAME | none")] = None,
    sandbox: Annotated[str | None, Opt(help="process | docker | none")] = None,
    docker_base_image: Annotated[
        str | None,
        Opt(help="--sandbox docker: base of the package images [each package's Dockerfile's]"),
    ] = None,
    docker_pip_args: Annotated[
        str | None,
        Opt(help='--sandbox docker: pip arguments of the image builds, e.g. "--no-index ..."'),
    ] = None,
    min_agreement: Annotated[
        float | None, Opt(help="rows with a lower winning vote share are disagreements [1.0]")
    ] = None,
    min_confidence: Annotated[
        float | None,
        Opt(help="rows whose winning label has a lower mean voter probability too [0]"),
    ] = None,
    max_verified: Annotated[
        str | None,
        Opt(help="verify at most N rows or P% of them in all; none: no limit [30%]"),
    ] = None,
    target_accuracy: Annotated[
        str | None,
        Opt(help="stop verifying once the estimated accuracy reaches this; none: no target [0.95]"),
    ] = None,
    round_rows: Annotated[
        int | None, Opt(help="rows the first round verifies; each round doubles [3% of rows]")
    ] = None,
    heldout_share: Annotated[
        float | None, Opt(help="share of each round held out to measure the labels [0.05]")
    ] = None,
    min_round_yield: Annotated[
        float | None,
        Opt(help="stop when a round would fix fewer labels per verified row than this [0.1]"),
    ] = None,
    learned_voters: Annotated[
        bool | None,
        Opt(
            "--learned-voters/--no-learned-voters",
            help="add voters trained on the verified rows (embedding head, TF-IDF) [on]",
        ),
    ] = None,
    learn_vote: Annotated[
        bool | None,
        Opt("--learn-vote/--no-learn-vote", help="learn vote weights from verified rows [on]"),
    ] = None,
    bundle_weights: Annotated[
        bool | None,
        Opt(
            "--bundle-weights/--no-bundle-weights",
            help="copy Hub voters' pinned files into the package; off: reference them only [on]",
        ),
    ] = None,
    voters: Annotated[int | None, Opt(help="voters discovery keeps [3]")] = None,
    pilot_rows: Annotated[int | None, Opt(help="pilot sample size [200]")] = None,
    pilot_verify: Annotated[
        int | None,
        Opt(
            "--pilot-verify",
            "--pilot-verify-rows",
            help=(
                "pilot rows verified to score candidates: the first held-out slice "
                "(0: none) [100]"
            ),
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
        "llm_batch": llm_batch or None,
        "verifier": verifier,
        "sandbox": sandbox,
        "docker_base_image": docker_base_image,
        "docker_pip_args": docker_pip_args,
        "min_agreement": min_agreement,
        "min_confidence": min_confidence,
        "max_verified": max_verified,
        "target_accuracy": target_accuracy,
        "round_rows": round_rows,
        "heldout_share": heldout_share,
        "min_round_yield": min_round_yield,
        "learned_voters": learned_voters,
        "learn_vote": learn_vote,
        "bundle_weights": bundle_weights,
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
        result, settings = _resume_run(resume, flags, reporter)
    else:
        if not task or data is None:
            raise UserInputError("give a TASK and --data FILE (or --resume RUN_ID)")
        result, settings = _start_run(task, data, flags, reporter)
    reporter.summary(summary_rows(result))
    if settings.json_summary:
        print(json.dumps(summary_json(result), indent=2))


def _start_run(
    task: str, data: Path, flags: dict[str, Any], reporter: ConsoleReporter
) -> tuple[RunOutput, Settings]:
    from agent.runs import check_llm_endpoint, default_context, execute, prepare_run

    settings = settings_from(flags)
    context = default_context(settings, reporter)
    check_llm_endpoint(context)  # before the run folder exists: a wrong key leaves nothing
    run = prepare_run(task, data, settings)
    reporter.stage("run", f"{run.run_id} ({run.run_dir})")
    result = guarded(lambda: execute(run, run.run_id, Path(run.run_dir), context), run.run_id)
    note_package_image(context, result, Path(run.run_dir), run.run_id)
    return result, settings


def _resume_run(
    run_id: str, flags: dict[str, Any], reporter: ConsoleReporter
) -> tuple[RunOutput, Settings]:
    """Continue a run with the settings it was started with.

    Of the flags, only ``--yes``, ``--json`` and the spending limits apply to a resumed run.
    """
    from agent.runs import check_llm_endpoint, default_context, execute, load_request

    runs_dir = flags["runs_dir"]
    base = settings_from({"runs_dir": runs_dir} if runs_dir else {})
    run_dir, settings = load_request(base.runs_dir, run_id)
    spending = {
        name: flags[name] for name in ("budget_usd", "max_cost_usd") if flags[name] is not None
    }
    settings = settings.model_copy(
        update={"yes": flags["yes"] or settings.yes, "json_summary": bool(flags["json_summary"])}
        | spending
    )
    context = default_context(settings, reporter)
    check_llm_endpoint(context)
    reporter.stage("resume", run_id)
    result = guarded(lambda: execute(None, run_id, run_dir, context), run_id)
    note_package_image(context, result, run_dir, run_id)
    return result, settings


register_subcommands(app)


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
