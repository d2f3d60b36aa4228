"""lint_labeler: format and check every rendered file, then promote the package.

A failure is a template bug: :class:`~agent.errors.TemplateError` stops the
run, naming the file and the problem, and the unlinted files never reach the
package folder.
"""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.packaging.build import promote
from agent.packaging.lint import format_and_lint
from agent.state import RunState


def lint_labeler(state: RunState, runtime: Runtime[RunContext]) -> dict:
    runtime.context.reporter.stage("lint_labeler")
    staging = Path(state.staging_dir)
    checked = format_and_lint(staging)
    package_dir = Path(state.run_dir) / "package"
    promote(staging, package_dir)
    runtime.context.reporter.info(f"{len(checked)} files formatted and lint-clean")
    return {"package_dir": str(package_dir), "staging_dir": None}
