"""The ``nsn-store`` command line: thin click commands over the library."""

from __future__ import annotations

import click

from nsn_store import __version__
from nsn_store.cli.common import Group
from nsn_store.cli.messages import MESSAGES_COMMANDS
from nsn_store.cli.schema import SCHEMA_COMMANDS
from nsn_store.cli.worker import WORKER_COMMANDS


def _ops_commands() -> list[click.Command]:
    """Return the operations commands (simulate, check-data, shard) when installed."""
    try:
        from nsn_store.cli.ops import OPS_COMMANDS
    except ModuleNotFoundError as exc:
        if exc.name != "nsn_store.cli.ops":
            raise  # a real missing dependency must not be hidden
        return []
    return list(OPS_COMMANDS)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nsn-store")
def main() -> None:
    """Create, check and operate the nsn-store MongoDB schema."""


for _command in [*SCHEMA_COMMANDS, *_ops_commands(), *WORKER_COMMANDS, *MESSAGES_COMMANDS]:
    main.add_command(_command)
