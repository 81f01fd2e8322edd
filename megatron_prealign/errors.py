"""The one base class of the errors meant for the user.

Every error whose message names what is wrong, where (file, line, flag) and the fix derives from
``PreAlignError``; entry points print such errors as ``error: ...`` and exit non-zero. Anything
else that escapes is a bug and keeps its traceback. Imports nothing of the package, so every
layer can use it.
"""


class PreAlignError(Exception):
    """A problem with the user's input, files or flags; the message says where and what to do."""
