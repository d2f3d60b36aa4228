"""The generated labeler: its spec, rendering, lint gate, building and running it in the
sandbox, the probe of that sandbox, and the one seam to its runtime modules."""
