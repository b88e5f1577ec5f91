"""The ground floor: whipup's own error types, importable from anywhere (this module imports no other fabfile
module, nor boto3 or paramiko)."""


class ProvisionError(Exception):
    """The cloud did not end up as roles.yaml describes; the message names what and where."""
