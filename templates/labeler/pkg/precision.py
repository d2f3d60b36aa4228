"""Which number format each transformer voter computes in on the CPU: the ``--quantize`` modes.

- ``pinned`` (the default): the precision the agent's pilot chose for each voter when the
  package was built (``VoterConfig.precision``: ``int8`` where the voter's int8 labels agreed
  with its fp32 labels on the pilot rows, else ``fp32``). Nothing is measured, so a text gets
  the same label in every file, and a small file pays nothing; a voter with no pinned
  precision runs in fp32.
- ``auto``: measure int8 against fp32 on the file's first :data:`INT8_SAMPLE_ROWS` rows (when
  the file is longer than that) and keep int8 for each voter whose labels agree on at least
  :data:`INT8_MIN_AGREEMENT` of them.
- ``measure``: the same check on every row of the first chunk however few they are: what
  the agent's pilot runs, reading each decision back to pin it.
- ``int8``: every transformer voter in int8; ``none``: every one in fp32.

On CUDA the voters run in bf16 whatever the mode (``int8`` is refused there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .cached import replay_decision, save_decision
from .feature_cache import FeatureCache
from .kinds import is_learned
from .transformer import Int8Decision, Int8Unavailable, torch_model, use_int8
from .voters import Voter

QUANTIZE_MODES = ("pinned", "auto", "measure", "int8", "none")
DEFAULT_QUANTIZE = "pinned"
INT8_SAMPLE_ROWS = 200
"""``auto`` compares int8 with fp32 on this many of the file's first rows."""
INT8_MIN_AGREEMENT = 0.995
"""``auto`` and ``measure`` keep int8 for a voter whose labels agree with fp32 on at least
this share."""
PINNED = "pinned at build time"
NOT_MEASURED_ON_CUDA = "not measured: the labeler ran on CUDA, in bf16"


def int8_groups(voters: Sequence[Voter]) -> list[list[Voter]]:
    """The voters whose torch model could run in int8, grouped by model (voters sharing an
    encoder share its precision), frozen voters first: a learned voter's decision would be
    taken again with each of its versions."""
    groups: dict[int, list[Voter]] = {}
    for voter in sorted(voters, key=is_learned):
        model = torch_model(voter)
        if model is not None:
            groups.setdefault(id(model), []).append(voter)
    return list(groups.values())


def int8_candidates(voters: Sequence[Voter]) -> list[Voter]:
    """One voter per model that could run in int8: the one whose decision the others share."""
    return [group[0] for group in int8_groups(voters)]


def pinned_precision(group: Sequence[Voter]) -> str | None:
    """The precision pinned for a model: the first of its voters' that has one."""
    return next((v.config.precision for v in group if v.config.precision), None)


def apply_pinned(voters: Sequence[Voter]) -> list[Int8Decision]:
    """``pinned`` on the CPU: int8 for each model whose voters pinned it; one decision per
    model that has a pin, none for the others (they stay in fp32)."""
    decisions = []
    for group in int8_groups(voters):
        pin = pinned_precision(group)
        if pin is not None:
            decisions.append(apply_pin(group[0], pin))
    return decisions


def apply_pin(voter: Voter, pin: str | None) -> Int8Decision:
    """Run ``voter`` (and those sharing its model) at the pinned precision."""
    name = voter.config.name
    if pin != "int8":
        return Int8Decision(name, False, None, 0, PINNED if pin else "no precision pinned")
    try:
        use_int8(voter)
    except Int8Unavailable as error:
        return Int8Decision(name, False, None, 0, f"pinned int8, but {error}")
    return Int8Decision(name, True, None, 0, PINNED)


def not_measured(voters: Sequence[Voter], reason: str) -> list[Int8Decision]:
    """fp32 for every model that could run in int8, with why it was not measured."""
    return [Int8Decision(v.config.name, False, None, 0, reason) for v in int8_candidates(voters)]


def sample_rows(quantize: str, total: int, chunk_size: int) -> int:
    """How many of the file's first rows the mode measures int8 on (0: none)."""
    if quantize == "measure":
        return min(total, chunk_size)
    if quantize == "auto":
        rows = min(INT8_SAMPLE_ROWS, chunk_size)
        return rows if total > rows else 0
    return 0


def record_precision(
    voters: Sequence[Voter],
    decisions: Sequence[Int8Decision],
    cache: FeatureCache,
    key: Callable[[Voter], dict],
    quantize: str,
) -> None:
    """Keep in ``cache`` the precision each model runs at (``decisions``; fp32 for the
    others), under the key of the voter the others share it with."""
    taken = {decision.voter: decision for decision in decisions}
    for voter in int8_candidates(voters):
        name = voter.config.name
        decision = taken.get(name) or Int8Decision(name, False, None, 0, f"--quantize {quantize}")
        save_decision(cache, key(voter), quantize, decision)


def replay_or_pin(
    voters: Sequence[Voter], cache: FeatureCache | None, key: Callable[[Voter], dict]
) -> list[Int8Decision]:
    """Apply, model by model, the precision ``cache`` recorded last, else the pinned one."""
    decisions = []
    for group in int8_groups(voters):
        voter = group[0]
        replayed = None if cache is None else replay_decision(voter, cache, key(voter), None)
        decisions.append(replayed or apply_pin(voter, pinned_precision(group)))
    return decisions
