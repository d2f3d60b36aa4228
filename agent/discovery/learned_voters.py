"""The learned voters a run adds: trained on its verified rows, for any task.

Most tasks have no ready-made specialist, so a run with a verifier always carries two
voters that learn the task from the rows it pays to verify: a linear head over the
sentence embeddings of an encoder (the pilot's embedding candidate, else the offline
catalog's all-MiniLM-L6-v2), and a TF-IDF model of word and character n-grams (a
different view, strong on keyword-heavy tasks). Both abstain until they are first
trained (``learn_voters``), and both are package voters like any other: versioned,
pinned, trained by the package's own command.
"""

from __future__ import annotations

from collections.abc import Sequence

from agent.discovery.catalog import BY_NAME, specialist_candidate
from agent.state import Candidate, TaskPlan

HEAD_KIND = "embedding-head"
TFIDF_KIND = "tfidf"
LEARNED_RUNTIME = ("numpy", "safetensors")
TFIDF_RUNTIME = ("scikit-learn", "scipy", *LEARNED_RUNTIME)


def learned_candidates(plan: TaskPlan, candidates: Sequence[Candidate]) -> list[Candidate]:
    """The learned voters for this task: the embedding head (when an encoder is at hand)
    and the TF-IDF model, named apart from ``candidates``."""
    taken = {candidate.name for candidate in candidates}
    learned = []
    encoder = next((c for c in candidates if c.kind == "embedding"), None)
    if encoder is None:
        catalog = specialist_candidate(BY_NAME["minilm"], plan)
        encoder = catalog if isinstance(catalog, Candidate) else None
    if encoder is not None:
        learned.append(
            encoder.model_copy(
                update={
                    "name": _free(f"{encoder.name}_head", taken),
                    "ref": f"learned:head on {encoder.ref}",
                    "kind": HEAD_KIND,
                    "model_labels": plan.label_names,
                    "label_map": {},
                    "options": {k: v for k, v in encoder.options.items() if k != "prototypes"},
                    "requirements": tuple(dict.fromkeys((*encoder.requirements, *LEARNED_RUNTIME))),
                    "label_map_note": "",
                }
            )
        )
    learned.append(
        Candidate(
            name=_free("tfidf", taken),
            ref="learned:tfidf",
            origin="learned",
            kind=TFIDF_KIND,
            path="",
            revision="trained",
            model_labels=plan.label_names,
            label_map={},
            license="trained on this run's verified rows",
            requirements=TFIDF_RUNTIME,
        )
    )
    return learned


def _free(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}{number}", number + 1
    taken.add(candidate)
    return candidate
