"""Errors volgen reports to a person: one line naming the file (or option) and the problem."""


class VolgenError(Exception):
    """Base class; the CLI prints `volgen: error: <message>` and exits non-zero."""


class InputError(VolgenError):
    """Bad input: a file that is missing, unreadable, or not what the job needs."""

    def __init__(self, path, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self):           # raised in a worker process (case loading), re-raised in the parent
        return type(self), (self.path, self.problem)


class OutputError(VolgenError):
    """An output that cannot or must not be written (exists, folder not writable)."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        return type(self), (self.path, self.problem)


class VolgenWarning(UserWarning):
    """Something the user should know that does not stop the job (the CLI prints it as one line)."""
