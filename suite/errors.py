"""The one error type a user sees: a single line that names the problem and the fix.

The CLI catches :class:`SuiteError`, prints ``error: <message>`` and exits with code 2;
anything else is a bug and keeps its traceback.
"""


class SuiteError(Exception):
    """Bad input or missing resource, explained in one line for the user."""
