"""Settling rows the voters dispute: the verdict store, the budget, the LLM judge with its
costs and cache, pilot verification and the files a person reviews."""
