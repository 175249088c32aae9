"""Talking to devices: transports (SSH, local), the per-run remote folder and the device pool."""

from qc.device.pool import DeviceLease, DevicePool
from qc.device.rundir import RunDir
from qc.device.transport import (
    Command,
    CommandResult,
    LocalTransport,
    Progress,
    SshConfig,
    SshTransport,
    Transport,
    build_shell_command,
    quote_remote_path,
)

__all__ = [
    "Command",
    "CommandResult",
    "DeviceLease",
    "DevicePool",
    "LocalTransport",
    "Progress",
    "RunDir",
    "SshConfig",
    "SshTransport",
    "Transport",
    "build_shell_command",
    "quote_remote_path",
]
