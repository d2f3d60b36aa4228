"""Verification in rounds: which rows a round verifies, how good the labels are so far, and
when to stop (the active-learning loop's services; the nodes orchestrate them)."""
