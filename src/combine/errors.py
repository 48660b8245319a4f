"""Errors that the command line turns into exit status 2 and one line on stderr."""


class InputError(Exception):
    """Bad input or usage: a file, argument or configuration the user can fix.

    The message must name the file (or argument) and say what is wrong, in one line, e.g.
    ``InputError("masks.npy: mask is not binary (found values other than 0 and 1)")``.
    """
