"""The one exception type of charnn.

The library raises CharnnError for anything a user can cause (bad input, bad flags, a damaged
checkpoint). The CLI turns it into a one-line `error: ...` on stderr and exit status `code`.
"""


class CharnnError(Exception):
    """A problem the user can fix; its message is shown as-is after `error: `."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code
