"""The run summary a command prints when a run ends: a JSON record and the same as table rows.

``summary_json`` is what ``--json`` prints on stdout (its keys are an interface scripts rely on);
``summary_rows`` is the human table the console shows on stderr, derived from it so the two never
disagree.
"""

from __future__ import annotations

from typing import Any

from agent.estimate import TARGET_MIN_HELDOUT
from agent.state import RunOutput


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
        "learned": [record.model_dump(mode="json") for record in result.learned],
        **_rounds_summary(result),
    }


def _estimate_rows(estimate: dict | None) -> list[tuple[str, str]]:
    """The estimated accuracy (agreement with an LLM verifier) and macro-F1, with intervals."""
    if estimate is None:
        return []
    what = "agreement with LLM" if estimate["basis"].startswith("llm") else "accuracy"
    rows = []
    for name, key in ((f"estimated {what}", "accuracy"), ("estimated macro-F1", "macro_f1")):
        value = estimate[key]
        rows.append((name, f"{value['point']:.3f} ({value['low']:.3f}-{value['high']:.3f}, 95%)"))
    return rows


def _rounds_summary(result: RunOutput) -> dict[str, Any]:
    """The estimate of the final labels, the target and whether it was met, each round."""
    last = result.rounds[-1] if result.rounds else None
    estimate = last.estimate if last is not None else None
    target = result.target_accuracy
    met = None
    if target is not None and estimate is not None:
        enough = estimate["heldout_rows"] >= TARGET_MIN_HELDOUT
        met = enough and estimate["accuracy"]["point"] >= target
    return {
        "estimate": estimate,
        "target_accuracy": target,
        "target_met": met,
        "stopped": last.stop if last is not None else None,
        "rounds": [record.model_dump(mode="json") for record in result.rounds],
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
    rows += _estimate_rows(data["estimate"])
    if data["target_met"] is not None:
        rows.append(
            (
                "target accuracy",
                f"{data['target_accuracy']:g}: " + ("met" if data["target_met"] else "not met"),
            )
        )
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
