"""One module per graph node, each named after the node (``verb_noun``)."""
