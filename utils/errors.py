"""The one exception type for problems a user can cause and fix."""


class UserError(Exception):
    """A bad config value, missing or malformed file, or impossible request.

    The message is one line that names the file or config key and says what was expected;
    the command-line entry points print it and exit with status 2.
    """


class TrainingFailure(Exception):
    """Training cannot go on: a site diverged (non-finite loss or weights) and the policy is ``abort``.

    The message names the site, round and step; the last completed round's checkpoint is intact and
    the command-line entry points exit with status 3.
    """
