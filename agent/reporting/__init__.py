"""What a run shows: the console display and the self-contained run report."""
