"""The core's error types, in a module that imports nothing of the core.

Readers (:mod:`analysis.io`, :mod:`analysis.annotations`, :mod:`analysis.slide_io`)
and checks raise these; the command-line tool prints their message as it is and
the web layer turns them into answers.  Keeping them here lets any module of
the core raise them without importing another reader (no import circle).
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input data: the message names the file (or slide) and the problem."""
