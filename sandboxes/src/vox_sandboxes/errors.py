"""The one exception type vox_sandboxes raises."""


class SandboxError(Exception):
    """A sandbox could not be created, found or removed; the message is meant for the user."""
