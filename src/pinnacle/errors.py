"""One exception type for bad input, so the workflow can show it without a traceback wall."""


class InputError(ValueError):
    """Bad user input. The message names the file (and row/key), what is wrong, and the fix.

    Parameters
    ----------
    where
        The file, with line, column or key where known.
    problem
        What is wrong, with the bad value.
    fix
        What to do about it.
    """

    def __init__(self, where: str, problem: str, fix: str | None = None):
        self.where = str(where)
        self.problem = problem
        self.fix = fix
        msg = f"{self.where}: {problem}"
        if fix:
            msg += f" Fix: {fix}"
        super().__init__(msg)
