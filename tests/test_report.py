"""The run report: one self-contained HTML page, checked as HTML and in headless Chromium.

Most tests build a run folder by hand (labeled output, verdicts, ledger) so every figure in the
report is known in advance; one runs the real agent offline and checks the report against the
labeled data it emitted. The browser test drives Debian's ``chromium`` over the DevTools
protocol on a pipe (no package needed) and skips only where chromium is not installed
(``scripts/install-chromium.sh`` installs it).
"""

from __future__ import annotations

import base64
import csv
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from agent.reporting.report import build_page, write_report
from agent.state import (
    Candidate,
    DatasetInfo,
    LabelingResult,
    LearnedVoterRecord,
    PilotReport,
    Rejection,
    RoundRecord,
    RunState,
    TaskLabel,
    TaskPlan,
    VerificationResult,
    VoterScore,
)
from templates.labeler.pkg.tabular import TableWriter

VOTERS = ("alpha", "beta", "gamma")
HOSTILE = '</script><script>alert("x")</script><img src=x onerror=alert(1)> & "quoted"'
HOSTILE_REASON = "the <b>LLM</b> said </td></tr></table><script>alert(2)</script>"
LEDGER = [
    {"model": "gpt-test", "rows": 2, "prompt_tokens": 900, "completion_tokens": 60,
     "cost_usd": 0.0012, "latency_s": 1.5, "outcome": "ok"},
    {"model": "gpt-test", "rows": 2, "prompt_tokens": 800, "completion_tokens": 50,
     "cost_usd": 0.0010, "latency_s": 2.5, "outcome": "ok"},
]  # fmt: skip


def labeled_row(row: int, text: str, votes: tuple, agreement: float, confidence: float) -> dict:
    """One row of the labeler's output; ``None`` in ``votes`` is an abstaining voter."""
    cast = [vote for vote in votes if vote is not None]
    record = {
        "id": row + 1,
        "text": text,
        "label": max(sorted(set(cast)), key=cast.count),
        "confidence": confidence,
        "agreement": agreement,
        "needs_review": agreement < 1.0,
    }
    for name, vote in zip(VOTERS[: len(votes)], votes, strict=True):
        record[f"label_{name}"] = vote
        record[f"prob_{name}"] = 0.5 if vote is None else 0.8
    return record


def unanimous_rows(count: int, voters: int = 3) -> list[dict]:
    labels = ("non-toxic", "toxic")
    return [
        labeled_row(i, f"friendly tweet number {i}", (labels[i % 2],) * voters, 1.0, 0.9 + i / 1e4)
        for i in range(count)
    ]


def disputed_rows() -> list[dict]:
    """Rows 20-24: five disagreements, one with a hostile text, one with an abstaining voter."""
    T, N = "toxic", "non-toxic"
    return [
        labeled_row(20, HOSTILE, (T, T, N), 0.666667, 0.55),
        labeled_row(21, "you are not wrong, just loud", (N, T, T), 0.666667, 0.60),
        labeled_row(22, "whatever, loser", (T, N, None), 0.5, 0.52),
        labeled_row(23, "meh " * 200, (T, T, N), 0.666667, 0.58),
        labeled_row(24, "go away", (N, T, T), 0.666667, 0.61),
    ]


VERDICTS = [
    {"row": 20, "label": "toxic", "source": "llm", "reason": HOSTILE_REASON},
    {"row": 21, "label": "non-toxic", "source": "llm", "reason": "sarcasm, not abuse"},
    {"row": 22, "label": "toxic", "source": "human", "reason": "from column gold"},
    {"row": 23, "label": "toxic", "source": "vote", "reason": "not verified"},
    {"row": 24, "label": None, "source": "unresolved", "reason": "awaits review"},
]


def make_run(
    run_dir: Path,
    rows: list[dict],
    verdicts: list[dict] | None,
    ledger: list[dict] = (),
    voters: int = 3,
    suffix: str = ".csv",
) -> RunState:
    """A run folder as the agent leaves it before emit_package, and its state."""
    names = VOTERS[:voters]
    output = run_dir / "labeled" / "pass-1" / f"output{suffix}"
    columns = ["id", "text", "label", "confidence", "agreement", "needs_review"]
    columns += [f"{kind}_{name}" for name in names for kind in ("label", "prob")]
    with TableWriter(output, columns) as writer:
        writer.write(rows)
    disputed = [row for row in rows if row["needs_review"]]
    verification = None
    if verdicts is not None:
        verdicts_path = run_dir / "verdicts.jsonl"
        verdicts_path.write_text("".join(json.dumps(v) + "\n" for v in verdicts))
        (run_dir / "ledger.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ledger))
        verification = VerificationResult(
            verifier="llm" if ledger else "none",
            verdicts_path=str(verdicts_path),
            verified=sum(v["source"] != "unresolved" for v in verdicts),
            unresolved=sum(v["source"] == "unresolved" for v in verdicts),
            llm_calls=len(ledger),
        )
    plan = TaskPlan(
        task="label tweets for toxicity",
        family="toxicity",
        labels=(TaskLabel(name="non-toxic"), TaskLabel(name="toxic")),
        text_column="text",
        search_queries=("toxic",),
        planner="rules",
    )
    candidates = tuple(
        Candidate(
            name=name,
            ref=f"org/{name}-toxicity",
            origin="hub",
            path="",
            revision="0" * 40,
            model_labels=("LABEL_0", "LABEL_1"),
            label_map={"LABEL_0": "non-toxic", "LABEL_1": "toxic"},
        )
        for name in (*names, "rejected")
    )
    return RunState(
        task=plan.task,
        data_path="tweets.csv",
        dataset=DatasetInfo(
            path="tweets.csv", format="csv", columns=("id", "text"), rows=len(rows), sha256="0"
        ),
        run_id="20260101-000000-abcdef",
        run_dir=str(run_dir),
        plan=plan,
        candidates=candidates,
        voters=candidates[:voters],
        pilot=PilotReport(
            rows=30,
            scores=tuple(
                VoterScore(name=c.name, consensus_agreement=0.9, selected=c.name in names, note="")
                for c in candidates
            ),
            disagreement_rate=0.2,
            output_path=str(run_dir / "pilot" / "output.csv"),
        ),
        labeling=LabelingResult(
            output_path=str(output),
            rows=len(rows),
            disagreements=len(disputed),
            seconds=3.0,
            disagreements_path=str(run_dir / "disagreements.jsonl"),
        ),
        labeling_passes=1,
        verification=verification,
    )


class PageReader(HTMLParser):
    """Tags, attributes and the visible text of a page, as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter = Counter()
        self.attributes: list[tuple[str, str, str]] = []
        self.ids: list[str] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        for name, value in attrs:
            self.attributes.append((tag, name, value or ""))
            if name == "id":
                self.ids.append(value)

    def handle_data(self, data):
        self.text.append(data)

    @property
    def visible_text(self) -> str:
        return "".join(self.text)

    def image_sources(self) -> list[str]:
        return [value for tag, name, value in self.attributes if tag == "img" and name == "src"]


def assert_self_contained(page: PageReader) -> None:
    """No script, no event handler, nothing that loads from anywhere but the page itself."""
    assert page.tags["script"] == 0 and page.tags["iframe"] == 0 and page.tags["link"] == 0
    assert not [a for a in page.attributes if a[1].startswith("on")]
    for tag, name, value in page.attributes:
        if name in ("src", "href", "srcset", "action", "data", "poster"):
            assert value.startswith("data:image/png;base64,"), (tag, name, value[:60])
    for source in page.image_sources():
        png = base64.b64decode(source.split(",", 1)[1], validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000


@pytest.fixture
def full_run(tmp_path) -> RunState:
    run_dir = tmp_path / "run"
    return make_run(run_dir, unanimous_rows(20) + disputed_rows(), VERDICTS, LEDGER)


def test_report_shows_every_section_with_the_runs_figures(full_run):
    run_dir = Path(full_run.run_dir)
    path = write_report(full_run, run_dir, {"plan_task": 0.21, "run_labeler": 3.4})

    assert path == run_dir / "report.html"
    html = path.read_text(encoding="utf-8")
    page = PageReader(html)
    assert_self_contained(page)
    sections = ("summary", "voters", "labels", "escalations", "agreement", "verified")
    assert set(page.ids) >= {*sections, "confidence", "cost", "timings", "disputed"}
    assert len(page.image_sources()) == 5  # labels, sources, agreement, verified, confidence
    text = page.visible_text
    assert HOSTILE in text and HOSTILE_REASON in text  # shown as text, never as markup
    assert "&lt;/script&gt;" in html and "<script" not in html

    report = build_page(full_run, run_dir, {"plan_task": 0.21})
    assert report.sources == (
        ("consensus", "20", "80.0%"),
        ("llm", "2", "8.0%"),
        ("human", "1", "4.0%"),
        ("vote", "1", "4.0%"),
        ("unresolved", "1", "4.0%"),
    )
    # alpha-beta agree on 22 of 25 rows; gamma abstained on row 22, so 24 rows count with it.
    assert report.agreement_table == (
        ("alpha", "100%", "88%", "83%"),
        ("beta", "88%", "100%", "92%"),
        ("gamma", "83%", "92%", "100%"),
    )
    assert report.verified_rows == 3
    assert report.verified_table == (
        ("alpha", "3 / 3", "100.0%"),
        ("beta", "1 / 3", "33.3%"),
        ("gamma", "0 / 2", "0.0%"),
    )
    assert report.ledger == (
        ("gpt-test", "ok", "2", "4", "1700", "110", "$0.0022", "2.00", "2.50"),
        ("all", "", "2", "4", "1700", "110", "$0.0022", "2.00", "2.50"),
    )
    assert report.timings[0] == ("plan_task", "0.2", "")
    assert ("labeling, pass 1", "3.0", "25 rows (8 rows/s)") in report.timings
    assert ("LLM calls (sum of latencies)", "4.0", "2 calls") in report.timings
    disputed = report.disputed
    assert len(disputed) == 20
    assert [row.row for row in disputed[:6]] == [22, 20, 23, 21, 24, 0]
    assert (disputed[0].label, disputed[0].source, disputed[0].votes) == (
        "toxic",
        "human",
        ("toxic", "non-toxic", "-"),
    )
    assert disputed[4].label == "(no label)" and disputed[4].source == "unresolved"
    assert len(disputed[2].text) == 240 and disputed[2].text.endswith("\u2026")


def test_report_of_a_run_with_one_voter_no_disagreement_and_no_llm(tmp_path):
    state = make_run(tmp_path, unanimous_rows(10, voters=1), verdicts=None, voters=1)

    html = write_report(state, tmp_path).read_text(encoding="utf-8")

    page = PageReader(html)
    assert_self_contained(page)
    assert len(page.image_sources()) == 3  # no agreement matrix, nothing verified
    assert "No LLM was called in this run." in page.visible_text
    assert "No row was verified by an LLM or a person in this run." in page.visible_text
    report = build_page(state, tmp_path, {})
    assert report.sources[0] == ("consensus", "10", "100.0%")
    assert report.ledger == () and report.verifier == "none (no disagreements)"
    assert [row.row for row in report.disputed] == list(range(10))


def test_labels_that_look_like_tex_or_html_are_drawn_and_shown_as_text(tmp_path):
    odd = {"non-toxic": "$\\frac{1$ costs", "toxic": "<b>toxic</b> & co"}
    rows = unanimous_rows(6)
    for row in rows:
        row["label"] = odd[row["label"]]
        for name in VOTERS:
            row[f"label_{name}"] = row["label"]
    state = make_run(tmp_path, rows, verdicts=None)
    plan = state.plan.model_copy(update={"labels": tuple(TaskLabel(name=n) for n in odd.values())})

    html = write_report(state.model_copy(update={"plan": plan}), tmp_path).read_text()

    page = PageReader(html)
    assert_self_contained(page)
    assert "<b>toxic</b> & co" in page.visible_text and page.tags["b"] == 0


def test_report_streams_a_large_output_and_keeps_the_20_most_disputed(tmp_path):
    rows = unanimous_rows(45_000)
    disputed_at = [44_999, 3, 12_345, 20_000, 30_001, 9_999, 10_000]
    for rank, row in enumerate(disputed_at):
        votes = ("toxic", "non-toxic", "toxic")
        rows[row] = labeled_row(row, f"disputed {rank}", votes, 0.666667, 0.5 + rank / 100)
    verdicts = [{"row": r, "label": "toxic", "source": "vote", "reason": ""} for r in disputed_at]
    state = make_run(tmp_path, rows, verdicts, suffix=".jsonl")

    started = time.perf_counter()
    report = build_page(state, tmp_path, {})
    elapsed = time.perf_counter() - started

    assert [row.row for row in report.disputed[:7]] == disputed_at
    assert [row.row for row in report.disputed[7:]] == [r for r in range(15) if r != 3][:13]
    assert report.sources[0] == ("consensus", "44993", "100.0%")
    assert report.sources[3] == ("vote", "7", "0.0%")
    assert elapsed < 10, f"{elapsed:.1f} s for 45,000 rows"


def estimate(accuracy: tuple, macro_f1: tuple, heldout: int, basis: str) -> dict:
    """A round's estimate as ``plan_round`` saves it: (point, low, high) of each metric."""
    point, low, high = ("point", "low", "high")
    return {
        "accuracy": dict(zip((point, low, high), accuracy, strict=True)),
        "macro_f1": dict(zip((point, low, high), macro_f1, strict=True)),
        "heldout_rows": heldout,
        "verified_rows": 0,
        "unverified_rows": 0,
        "level": 0.95,
        "basis": basis,
    }


def three_rounds(basis: str = "column:gold") -> tuple[RoundRecord, ...]:
    """Estimates rising over three assessments; the budget stops the rounds at the third."""
    return (
        RoundRecord(
            round=1, labeling_pass=1, verified=5, heldout=5, unverified=20,
            estimate=estimate((0.70, 0.55, 0.82), (0.65, 0.50, 0.80), 5, basis),
            chosen=5, chosen_heldout=1, expected_yield=0.4, cost_usd=0.0012, seconds=12.5,
        ),
        RoundRecord(
            round=2, labeling_pass=2, verified=10, heldout=6, unverified=15,
            estimate=estimate((0.80, 0.68, 0.90), (0.76, 0.62, 0.88), 6, basis),
            chosen=5, chosen_heldout=1, expected_yield=0.25, cost_usd=0.0022, seconds=30.0,
        ),
        RoundRecord(
            round=3, labeling_pass=3, verified=15, heldout=7, unverified=10,
            estimate=estimate((0.88, 0.79, 0.95), (0.85, 0.74, 0.93), 7, basis),
            cost_usd=0.0031, seconds=47.0, stop="budget", stop_note="15 of 15 rows verified",
        ),
    )  # fmt: skip


def test_report_shows_the_learning_curve_and_the_rounds(full_run):
    state = full_run.model_copy(update={"rounds": three_rounds(), "target_accuracy": 0.85})
    run_dir = Path(state.run_dir)

    page = PageReader(write_report(state, run_dir).read_text(encoding="utf-8"))

    assert_self_contained(page)
    assert "rounds" in page.ids and len(page.image_sources()) == 6
    alts = [value for tag, name, value in page.attributes if tag == "img" and name == "alt"]
    assert "Estimated accuracy against rows verified" in alts
    assert "agreement with the LLM" not in page.visible_text
    report = build_page(state, run_dir, {})
    assert report.rounds == (
        ("1", "1", "5 (20.0%)", "5", "0.700 (0.550-0.820)", "0.650 (0.500-0.800)",
         "5 (1 held out)", "40.0%", "$0.0012", "12.5", ""),
        ("2", "2", "10 (40.0%)", "6", "0.800 (0.680-0.900)", "0.760 (0.620-0.880)",
         "5 (1 held out)", "25.0%", "$0.0022", "30.0", ""),
        ("3", "3", "15 (60.0%)", "7", "0.880 (0.790-0.950)", "0.850 (0.740-0.930)",
         "-", "-", "$0.0031", "47.0", "budget: 15 of 15 rows verified"),
    )  # fmt: skip
    summary = dict(report.summary)
    assert summary["estimated accuracy"] == "0.880 (0.790-0.950); 95% interval, 7 held-out rows"
    assert summary["estimated macro-F1"] == "0.850 (0.740-0.930); 95% interval, 7 held-out rows"
    assert summary["target accuracy"] == "0.85: met"
    assert summary["verification rounds"] == "2"
    assert summary["rounds stopped"] == "budget: 15 of 15 rows verified"


def test_an_llm_verifier_makes_the_estimate_agreement_with_the_llm(full_run):
    rounds = three_rounds(basis="llm:gpt-4o-mini")
    state = full_run.model_copy(update={"rounds": rounds, "target_accuracy": 0.9})
    run_dir = Path(state.run_dir)

    page = PageReader(write_report(state, run_dir).read_text(encoding="utf-8"))

    assert "agreement with the LLM verifier" in page.visible_text
    assert "The verifier is an LLM (gpt-4o-mini)" in page.visible_text
    alts = [value for tag, name, value in page.attributes if tag == "img" and name == "alt"]
    assert "Estimated agreement with the LLM verifier against rows verified" in alts
    summary = dict(build_page(state, run_dir, {}).summary)
    assert summary["estimated agreement with the LLM verifier"].startswith("0.880 (0.790-0.950)")
    assert summary["target accuracy"] == "0.9: not met"


def test_report_lists_the_latest_learned_voters_and_the_refused_models(full_run):
    learned = (
        LearnedVoterRecord(voter="tfidf", kind="tfidf-logistic", version="v1", examples=8,
                           training_accuracy=1.0, cross_validated_accuracy=0.625, before_pass=2),
        LearnedVoterRecord(voter="knn", kind="embedding-knn", version="v1", examples=8,
                           training_accuracy=0.9, cross_validated_accuracy=0.75, before_pass=2),
        LearnedVoterRecord(voter="tfidf", kind="tfidf-logistic", version="v2", examples=13,
                           training_accuracy=1.0, cross_validated_accuracy=0.8462, before_pass=3),
    )  # fmt: skip
    rejections = (
        Rejection(ref="org/coin-flip", reason="no better than chance on the verified rows"),
        Rejection(ref="org/<b>odd</b>", reason="licence <i>unknown</i>"),
    )
    state = full_run.model_copy(update={"learned": learned, "rejections": rejections})
    run_dir = Path(state.run_dir)

    page = PageReader(write_report(state, run_dir).read_text(encoding="utf-8"))

    assert {"learned", "rejections"} <= set(page.ids)
    text = page.visible_text
    assert "no better than chance on the verified rows" in text
    assert "org/<b>odd</b>" in text and "licence <i>unknown</i>" in text
    assert page.tags["b"] == 0 and page.tags["i"] == 0
    report = build_page(state, run_dir, {})
    assert report.learned == (
        ("tfidf", "tfidf-logistic", "v2", "13", "84.6%", "3"),
        ("knn", "embedding-knn", "v1", "8", "75.0%", "2"),
    )
    assert report.rejections == tuple((r.ref, r.reason) for r in rejections)


def test_report_without_rounds_or_without_an_estimate(full_run):
    run_dir = Path(full_run.run_dir)
    page = PageReader(write_report(full_run, run_dir).read_text(encoding="utf-8"))
    assert not {"rounds", "learned", "rejections"} & set(page.ids)
    assert "rounds stopped" not in dict(build_page(full_run, run_dir, {}).summary)

    no_verifier = RoundRecord(
        round=1, labeling_pass=1, verified=0, heldout=0, unverified=25,
        stop="no-verifier", stop_note="no verifier to check rows with",
    )  # fmt: skip
    state = full_run.model_copy(update={"rounds": (no_verifier,), "target_accuracy": 0.9})

    page = PageReader(write_report(state, run_dir).read_text(encoding="utf-8"))

    assert_self_contained(page)
    assert "rounds" in page.ids and len(page.image_sources()) == 5  # no learning curve
    assert "No estimate of the labels' accuracy" in page.visible_text
    report = build_page(state, run_dir, {})
    assert report.rounds_plot is None
    assert report.rounds == (
        ("1", "1", "0 (0.0%)", "0", "-", "-", "-", "-", "$0.0000", "0.0",
         "no-verifier: no verifier to check rows with"),
    )  # fmt: skip
    summary = dict(report.summary)
    assert summary["target accuracy"] == "0.9: not estimated"
    assert "estimated accuracy" not in summary


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:sandbox isolation is off")
def test_report_of_a_real_offline_run_matches_the_labeled_data(
    tmp_path, tweets_csv, toxic_voters, monkeypatch
):
    from agent.cli import main
    from agent.graph import compile_graph

    monkeypatch.chdir(tmp_path)
    output = tmp_path / "labeled.csv"
    args = ["label tweets for toxicity", "--data", str(tweets_csv), "--out", str(tmp_path / "out")]
    args += ["--output", str(output), "--offline", "--sandbox", "none", "--verifier", "none"]
    for path in toxic_voters.values():
        args += ["--model", str(path)]
    assert main(args + ["--yes"]) == 0
    (run_dir,) = (tmp_path / ".autoannotator" / "runs").iterdir()
    checkpoint = compile_graph(run_dir).get_state({"configurable": {"thread_id": run_dir.name}})
    state = RunState.model_validate(checkpoint.values)

    html = write_report(state, run_dir).read_text(encoding="utf-8")

    page = PageReader(html)
    assert_self_contained(page)
    assert len(page.image_sources()) == 4  # --verifier none: nothing verified
    with open(output, newline="", encoding="utf-8") as handle:
        labeled = list(csv.DictReader(handle))
    report = build_page(state, run_dir, {})
    sources = Counter(row["source"] for row in labeled)
    assert report.sources == tuple(
        (source, str(sources[source]), f"{sources[source] / len(labeled):.1%}")
        for source in ("consensus", "llm", "human", "vote", "unresolved")
    )
    names = [voter.name for voter in state.voters]
    for i, first in enumerate(names):
        for j, second in enumerate(names):
            both = [r for r in labeled if r[f"label_{first}"] and r[f"label_{second}"]]
            agreed = sum(r[f"label_{first}"] == r[f"label_{second}"] for r in both)
            assert report.agreement_table[i][j + 1] == f"{agreed / len(both):.0%}"


# Headless Chromium, driven over the DevTools protocol on a pipe.

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # A request that escaped anyway must not reach a network: no name resolves.
    "--host-resolver-rules=MAP * ~NOTFOUND",
)
PAGE_CHECK = """(async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map((image) => image.decode().catch(() => null)));
  return {
    images: images.map((image) => ({
      alt: image.alt, complete: image.complete,
      width: image.naturalWidth, height: image.naturalHeight,
    })),
    scripts: document.scripts.length,
    text: document.body.innerText,
    resources: performance.getEntriesByType("resource").map((entry) => entry.name),
  };
})()"""


class Chromium:
    """Just enough of the DevTools protocol: commands, events, one page session."""

    def __init__(self, executable: str, profile: Path) -> None:
        to_browser, self._commands = os.pipe()
        self._replies, from_browser = os.pipe()

        def use_fds_3_and_4() -> None:
            # Via fds >= 10 first, so neither end is overwritten when os.pipe returned 3 or 4.
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=use_fds_3_and_4,
            close_fds=False,  # Python's own descriptors are not inheritable anyway
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._last_id = 0
        self.events: list[dict] = []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]
        for domain in ("Page", "Network", "Log"):
            self.send(f"{domain}.enable", session=self.session)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._last_id:
                assert "error" not in reply, reply
                return reply["result"]

    def _receive(self, timeout_s: float = 20.0) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._replies], [], [], timeout_s)
            chunk = os.read(self._replies, 1 << 16) if ready else b""
            assert chunk, "chromium stopped answering"
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed = json.loads(message)
        if "method" in parsed:
            self.events.append(parsed)
        return parsed

    def load(self, path: Path) -> list[dict]:
        """Open ``path``, wait for its load event; returns the protocol events of the load."""
        self.events = []
        self.send("Page.navigate", {"url": path.as_uri()}, session=self.session)
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            self._receive()
        return self.events

    def evaluate(self, expression: str):
        params = {"expression": expression, "awaitPromise": True, "returnByValue": True}
        reply = self.send("Runtime.evaluate", params, session=self.session)
        assert "exceptionDetails" not in reply, reply
        return reply["result"]["value"]

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.process.wait(timeout=10)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._commands)
            os.close(self._replies)


def requested_urls(events: list[dict]) -> list[str]:
    return [
        e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"
    ]


@pytest.fixture
def chromium(tmp_path):
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("chromium is not installed (scripts/install-chromium.sh installs it)")
    browser = Chromium(executable, tmp_path / "chromium-profile")
    try:
        yield browser
    finally:
        browser.close()


def test_report_renders_every_plot_in_chromium_and_requests_nothing(full_run, chromium, tmp_path):
    report = write_report(full_run, Path(full_run.run_dir))
    # The control proves the request log sees a page's requests: this page makes one.
    control = tmp_path / "control.html"
    control.write_text('<img src="http://report-test.invalid/pixel.png" alt="remote">')
    assert "http://report-test.invalid/pixel.png" in requested_urls(chromium.load(control))

    events = chromium.load(report)
    seen = chromium.evaluate(PAGE_CHECK)

    urls = requested_urls(events)
    assert urls and all(url.split(":", 1)[0] in ("file", "data") for url in urls), urls
    assert [url for url in urls if url.startswith("file:")] == [report.as_uri()]
    assert all(name.startswith("data:") for name in seen["resources"]), seen["resources"]
    failures = [e for e in events if e["method"] == "Network.loadingFailed"]
    assert not failures, failures
    logged = [e["params"]["entry"] for e in events if e["method"] == "Log.entryAdded"]
    assert not [entry for entry in logged if entry["level"] == "error"], logged
    assert len(seen["images"]) == 5
    for image in seen["images"]:
        assert image["complete"] and image["width"] > 300 and image["height"] > 100, image
    assert seen["scripts"] == 0
    assert HOSTILE in seen["text"] and HOSTILE_REASON in seen["text"]
