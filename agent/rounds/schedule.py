"""How big each round is, and when the rounds stop.

Round sizes grow geometrically (doubling from the first round's size), so a run needs few
rounds whatever its budget: a round costs a retraining of the light learned voters and a
relabeling from cached features, so rounds are cheap but not free. The rounds stop, after a
labeling pass, at the first of:

* ``no-verifier``: nothing can verify rows (``--verifier none``);
* ``target``: the estimated accuracy of the final labels reaches ``--target-accuracy``,
  resting on at least :data:`TARGET_MIN_HELDOUT` held-out rows (a few rows all right are not
  evidence);
* ``budget``: ``--max-verified`` is spent;
* ``exhausted``: every row is verified;
* ``flat``: the learning curve has flattened: the rows the next round would verify for
  their gain are expected to fix fewer labels per verified row than ``--min-round-yield``
  (after the first round; the vote's confidence gives the expectation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agent.estimate import TARGET_MIN_HELDOUT

GROWTH = 2
"""Each round verifies this many times the rows of the one before."""
FIRST_ROUND_SHARE = 0.03
"""The first round's share of the rows, when ``--round-rows`` does not say (measured:
BENCHMARKS.md, "A first round of 3% of the rows": at the same budget, 3% beat 5% on both
halves of ten samples with the lexicons and tied with no specialist, for one more cheap round)."""
FIRST_ROUND_MIN, FIRST_ROUND_MAX = 40, 2000


def first_round_rows(rows: int, setting: int | None) -> int:
    """The first round's size: ``--round-rows``, else 3% of the rows within [40, 2000]."""
    if setting:
        return setting
    return min(max(math.ceil(FIRST_ROUND_SHARE * rows), FIRST_ROUND_MIN), FIRST_ROUND_MAX)


def round_rows(round_number: int, rows: int, setting: int | None, left: int | None) -> int:
    """Rows round ``round_number`` (1-based) verifies, within what is left of the budget."""
    size = first_round_rows(rows, setting) * GROWTH ** (round_number - 1)
    return size if left is None else max(min(size, left), 0)


def split_round(size: int, heldout_share: float) -> tuple[int, int]:
    """(rows chosen for their gain, rows held out) of a round of ``size`` rows."""
    heldout = round(size * heldout_share)
    if heldout_share > 0 and size >= 2:
        heldout = max(heldout, 1)
    return size - heldout, heldout


@dataclass(frozen=True)
class StopCheck:
    """What the rounds so far allow the next decision to rest on."""

    verifier: str
    estimate: float | None
    """The estimated accuracy of the final labels, if there are held-out rows."""
    target: float | None
    heldout_rows: int
    """Held-out rows the estimate rests on."""
    left: int | None
    """Rows the budget still pays for (None: no budget)."""
    unverified: int


def stop_before_choosing(check: StopCheck) -> tuple[str, str] | None:
    """(reason, explanation) to stop without choosing rows, or None."""
    if check.verifier == "none":
        return "no-verifier", "--verifier none: nothing verifies rows, the vote stands"
    measured = check.estimate is not None and check.heldout_rows >= TARGET_MIN_HELDOUT
    if check.target is not None and measured and check.estimate >= check.target:
        return "target", (
            f"the estimated accuracy {check.estimate:.3f} reaches --target-accuracy "
            f"{check.target:g}"
        )
    if check.left is not None and check.left <= 0:
        return "budget", "the --max-verified budget is spent"
    if check.unverified <= 0:
        return "exhausted", "every row is verified"
    return None


def stop_after_choosing(
    round_number: int, expected_yield: float | None, gain_rows: int, min_yield: float
) -> tuple[str, str] | None:
    """Stop when the next round would not pay: the learning curve has flattened."""
    if round_number <= 1 or expected_yield is None or expected_yield >= min_yield:
        return None
    fixed = expected_yield * gain_rows
    return "flat", (
        f"the learning curve has flattened: the {gain_rows} rows the next round would verify "
        f"for their gain are expected to fix about {fixed:.0f} labels ({expected_yield:.1%} "
        f"of them, under --min-round-yield {min_yield:g})"
    )
