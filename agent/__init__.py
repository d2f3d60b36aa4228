"""autoannotator-agent: an LLM orchestrates small classifiers to label text."""

__version__ = "0.1.0"
