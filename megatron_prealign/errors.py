"""The one base class of the errors meant for the user.

Every error whose message names what is wrong, where (file, line, flag) and the fix derives from
``PreAlignError``; entry points print such errors as ``error: ...`` and exit non-zero. Anything
else that escapes is a bug and keeps its traceback. Imports nothing of the package, so every
layer can use it.
"""


class PreAlignError(Exception):
    """A problem with the user's input, files or flags; the message says where and what to do."""


def user_message(err: PreAlignError) -> str:
    """The message of ``err`` as its raiser wrote it.

    A DataLoader worker's exception reaches the main process re-raised by torch with the worker's
    whole traceback as its message ("Caught ShardError in DataLoader worker process 0. Original
    Traceback ..."); the message proper is what follows the exception's name on the traceback's
    last line. Any other message is returned as it is.
    """
    text = str(err)
    if not (text.startswith("Caught ") and "\nOriginal Traceback" in text):
        return text
    kind = type(err)
    for marker in (f"\n{kind.__module__}.{kind.__qualname__}: ", f"\n{kind.__qualname__}: "):
        at = text.rfind(marker)
        if at >= 0:
            return text[at + len(marker):].rstrip("\n")
    return text
