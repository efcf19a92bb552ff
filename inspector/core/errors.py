"""The one base of Inspector's own errors.

Every error Inspector raises on purpose (a bad file, a lost camera, a damaged outbox)
derives from InspectorError as well as from the built-in it has always been (ValueError,
RuntimeError, ...): callers that caught the built-in still do, and a caller at the top
(the CLI, the service) can tell "Inspector said no, with a message for the user" apart
from a bug with one `except InspectorError`.
"""

from __future__ import annotations


class InspectorError(Exception):
    """Base of the errors Inspector raises with a message meant for its user."""
