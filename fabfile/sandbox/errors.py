class SandboxError(Exception):
    """The local cloud cannot do what was asked; the message says why and what to do."""
