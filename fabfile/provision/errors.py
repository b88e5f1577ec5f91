"""The provisioning error type, importable without pulling in boto3 or paramiko."""


class ProvisionError(Exception):
    """The cloud did not end up as roles.yaml describes; the message names what and where."""
