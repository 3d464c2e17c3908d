"""The one error type users see: a one-line message, exit code 2, no traceback."""


class SeedlabError(Exception):
    """Bad input or an unusable store. The CLI prints `seedlab: <message>` and exits 2."""


def choice_error(what: str, value: object, valid) -> SeedlabError:
    """`unknown task 'sst3' (valid: cola, mnli, ...)`: the shape of every 'not one of these' error."""
    return SeedlabError(f"unknown {what} {value!r} (valid: {', '.join(str(v) for v in valid)})")
