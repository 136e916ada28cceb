"""Errors a user can act on. Stage entry points print these as one clear line, not a traceback."""


class PipelineError(Exception):
    """Base of every error that means 'your input or params are wrong', with the fix in the message."""


class CorpusError(PipelineError):
    """The corpus as a whole cannot be read (missing path, unknown layout, invalid scores.json)."""


class ParamsError(PipelineError):
    """params.yaml is invalid; the message names the key."""


class RejectBoundExceeded(PipelineError):
    """More utterances were rejected than data.max_reject_fraction allows."""
