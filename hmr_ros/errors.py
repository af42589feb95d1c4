"""The base class of the errors that mean "the user's input is wrong".

Every error a user can cause and fix (a bad file, flag or value: a malformed configuration, an
unreadable bag, checkpoint, SMPL file or frame cache, a missing backend) derives from
`HmrRosError`, keeping its own standard base as well (`ValueError`, `RuntimeError`), so callers
that catch those still work. The `hmr-ros` command prints such an error's message as one line
instead of a traceback.
"""

from __future__ import annotations


class HmrRosError(Exception):
    """A user's input is wrong: a bad file, flag or value; commands print its message as one
    line."""
