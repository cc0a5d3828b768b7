"""The one exception type for problems a user can cause and fix."""

import re

# Line breaks and other control characters, which a message quotes from user input (a key, a file name)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def _escaped(match: re.Match) -> str:
    return repr(match.group())[1:-1]


class UserError(Exception):
    """A bad config value, missing or malformed file, or impossible request.

    The message is one line that names the file or config key and says what was expected;
    the command-line entry points print it and exit with status 2. A line break or other control
    character in it (quoted from a key or file name) is written as its escape, so the message stays one
    line whatever the input.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        if isinstance(message, str):
            message = _CONTROL.sub(_escaped, message)
        super().__init__(message, *args)


class TrainingFailure(Exception):
    """Training cannot go on: a site diverged (non-finite loss or weights) and the policy is ``abort``.

    The message names the site, round and step; the last completed round's checkpoint is intact and
    the command-line entry points exit with status 3.
    """
