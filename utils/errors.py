"""The one exception type for problems a user can cause and fix."""

import re

# Terminal escape sequences and control characters other than line breaks, which a message may quote
# from user input (a key, a file name) or from a library's error
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|[\x00-\x08\x0b-\x1f\x7f]")


def single_line(text: str) -> str:
    """``text`` as one printable line: terminal escape codes and control characters removed, its
    lines (any line break Python knows) stripped and joined by one space, and what UTF-8 cannot encode
    (the surrogates a file name of undecodable bytes gives) written as escapes."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = _CONTROL.sub("", text.replace("\r\n", "\n"))
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


class UserError(Exception):
    """A bad config value, missing or malformed file, or impossible request.

    The message is one line that names the file or config key and says what was expected;
    the command-line entry points print it and exit with status 2. Whatever it quotes (a key or file
    name from the input, a library's error), it is made one line by :func:`single_line`.
    """

    def __init__(self, message: object = "", *args: object) -> None:
        if isinstance(message, str):
            message = single_line(message)
        super().__init__(message, *args)


class TrainingFailure(Exception):
    """Training cannot go on: a site diverged (non-finite loss or weights) and the policy is ``abort``.

    The message names the site, round and step; the last completed round's checkpoint is intact and
    the command-line entry points exit with status 3.
    """
