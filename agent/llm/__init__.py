"""The LLM behind the project's own interface: the client, its prompts and its prices."""
