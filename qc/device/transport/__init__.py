"""Run commands and move files on a device: over SSH (paramiko) or on this machine.

The package is split by concern:

* :mod:`~qc.device.transport.protocol` - the :class:`Transport` contract, results and shell quoting;
* :mod:`~qc.device.transport.local` - :class:`LocalTransport` (subprocess and file copies);
* :mod:`~qc.device.transport.sshconfig` - :class:`SshConfig`, secrets, host-key policies;
* :mod:`~qc.device.transport.ssh` - :class:`SshTransport` (connection, retries, deadline watchdog);
* :mod:`~qc.device.transport.commands` - commands over SSH and the kill at a deadline;
* :mod:`~qc.device.transport.transfer` - staging helpers and the SSH file/folder transfers;
* :mod:`~qc.device.transport.channel` - paramiko channel plumbing shared by the SSH modules.

Importing this package does not import paramiko: that happens when an :class:`SshTransport` is created.
"""

from qc.device.transport.local import LocalTransport
from qc.device.transport.protocol import (
    Command,
    CommandResult,
    Progress,
    Transport,
    build_shell_command,
    quote_remote_path,
)
from qc.device.transport.ssh import SshConfig, SshTransport

__all__ = [
    "Command",
    "CommandResult",
    "LocalTransport",
    "Progress",
    "SshConfig",
    "SshTransport",
    "Transport",
    "build_shell_command",
    "quote_remote_path",
]
