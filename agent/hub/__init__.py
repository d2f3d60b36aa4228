"""The Hugging Face Hub behind the project's own interface: search, model info, pinned
downloads, the records that let a rerun reproduce without it, and reading model folders."""
