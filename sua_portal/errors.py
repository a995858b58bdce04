"""Domain errors: what went wrong, in words a person can act on, and nothing about HTTP.

Services raise these; the API's one exception handler (:func:`sua_portal.http.exception_handler`)
turns them into answers, and management commands print their message. The kind of problem is
the class: a request that clashes with what is stored, something too large, something that is
no longer there. Keyword details (``offset=...``) travel with the message.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Input a person has to fix; the message says what and where, ``details`` add facts to act on."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class Conflict(DomainError):
    """The request clashes with what is stored (the same file twice, the wrong upload offset)."""


class Forbidden(DomainError):
    """The caller may see the object but not do this with it (a reviewer of another cohort)."""


class TooLarge(DomainError):
    """More bytes than this server accepts."""


class Gone(DomainError):
    """What the request builds on was there once and is not any more."""


class Unreadable(DomainError):
    """A stored file cannot be read (a slide that failed its check, or missing from storage)."""
