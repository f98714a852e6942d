"""`zkfast shell`: an interactive ZooKeeper shell that prints what Apache ZooKeeper 3.8's zkCli.sh prints.

Entry point: `main(argv) -> exit code`.  Built on kazoo (session, connection, authentication); see
`zkfast.shell.main` for the command line and `zkfast.shell.session` for how the Java client's behaviour
(watch bookkeeping, event printing, error texts) is reproduced on top of kazoo.
"""

from __future__ import annotations

from zkfast.shell.main import main

__all__ = ["main"]
