"""One error hierarchy, split by who caused the error.

* :class:`UserInputError`: the user's input cannot work (a missing file, an
  unknown column, a model that does not fit the task). Exit status 2.
* :class:`ModelOutputError`: the LLM's answer is unusable (invalid plan, label
  outside the set). Recorded and retried within a limit by the node that asked.
* Everything else is our code or the machine (a template bug, a sandbox that
  cannot start, a labeler that crashed, a service that stays down). Exit status 1.

Every message is one line a user can act on; the CLI never shows a traceback
for these.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base class; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class UserInputError(AgentError):
    """Bad input from the user: data, flags or chosen models."""

    exit_code = 2


class ModelOutputError(AgentError):
    """The LLM returned something that fails validation."""


class LLMUnavailableError(AgentError):
    """The LLM endpoint failed after retries."""


class HubUnavailableError(AgentError):
    """The Hugging Face Hub failed after retries."""


class TemplateError(AgentError):
    """Rendering or linting the labeler failed: a bug in our templates."""


class LabelerRunError(AgentError):
    """The rendered labeler failed inside the sandbox."""


class SandboxLimitError(LabelerRunError):
    """The labeler was killed for passing a sandbox limit (time or memory)."""


class InternalError(AgentError):
    """A bug in our code (or a library's) while a run went on; the run stays resumable.

    The message is the original exception's type and text; the CLI prints it as an internal
    error, never as an outage of a service.
    """


class SandboxCheckError(AgentError):
    """The sandbox failed its probe: a labeler cannot run in it, or it leaks the network."""


class RunStateError(AgentError):
    """A run folder is missing, incomplete or from an incompatible version."""

    exit_code = 2


class AwaitingReview(AgentError):
    """A round's rows wait for a person's verdicts (``--verifier human``): the run pauses,
    checkpointed, and continues with ``--resume`` once they are imported. Exit status 3."""

    exit_code = 3
