"""The labeler package's templates (``*.jinja`` rendered, everything else copied as is)."""
