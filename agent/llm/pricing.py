"""What LLM tokens cost: a price table per model, in US dollars per million tokens.

Defaults are list prices of common OpenAI models; ``AUTOANNOTATOR_LLM_PRICES``
(JSON: ``{"model": [input, output]}``) adds or overrides entries. An unknown
model costs nothing in the figures, and the summary says its price is unknown.
The Batch API (``--llm-batch``) bills at :data:`BATCH_DISCOUNT` of these prices
(:meth:`Price.batch_rate`).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.llm.client import TokenUsage

DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}
BATCH_DISCOUNT = 0.5
"""What the OpenAI Batch API charges, as a share of the synchronous price (half, for every
model it serves)."""


@dataclass(frozen=True)
class Price:
    input_per_million: float
    output_per_million: float
    known: bool = True

    def cost(self, usage: TokenUsage) -> float:
        return (
            usage.prompt_tokens * self.input_per_million
            + usage.completion_tokens * self.output_per_million
        ) / 1_000_000

    def batch_rate(self) -> Price:
        """This price as the Batch API bills it."""
        return Price(
            self.input_per_million * BATCH_DISCOUNT,
            self.output_per_million * BATCH_DISCOUNT,
            self.known,
        )


def price_for(model: str, overrides: dict[str, tuple[float, float]] | None = None) -> Price:
    table = {**DEFAULT_PRICES, **(overrides or {})}
    if model in table:
        return Price(*table[model])
    # Dated snapshots ("gpt-4o-mini-2024-07-18") cost what their base model costs.
    base = max((name for name in table if model.startswith(name + "-")), key=len, default=None)
    if base is not None:
        return Price(*table[base])
    return Price(0.0, 0.0, known=False)
