"""The core's error types, in a module that imports nothing of the core.

Readers (:mod:`analysis.io`, :mod:`analysis.annotations`, :mod:`analysis.slide_io`)
and checks raise these; the command-line tool prints their message as it is and
the web layer turns them into answers.  Keeping them here lets any module of
the core raise them without importing another reader (no import circle).
"""

from __future__ import annotations

__all__ = ["InputError", "NoTumorAreaError"]


class InputError(ValueError):
    """Bad input data: the message names the file (or slide) and the problem."""


class NoTumorAreaError(InputError):
    """An annotation file that outlines no tumor area: empty, only points or degenerate polygons, no
    group or class that means tumor, or tumor entirely cut out.  Never read as a silently empty truth.

    ``reason``: "empty", "no area", "no tumor class", "tumor without area", "collinear" or "cut out";
    ``labels``: the groups or classes the file holds; ``tumor_classes``: the names that would have meant
    tumor (a caller may offer to choose others).
    """

    def __init__(self, message: str, *, reason: str, labels: tuple[str, ...] = (),
                 tumor_classes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.labels = labels
        self.tumor_classes = tumor_classes
