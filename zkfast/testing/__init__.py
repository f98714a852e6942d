"""Real ZooKeeper servers for Python test suites: zkfast (no Java needed), or Apache ZooKeeper 3.8 with
`kind="apache"`, started in a fraction of a second, with the faults a test needs.

    from zkfast.testing import ZkServer, ZkCluster, expire_session

    with ZkServer() as server:                  # 127.0.0.1, a free port, a temporary dataDir
        client = server.client()                # a started KazooClient
        expire_session(client)                  # the session expires now (Curator's KillSession)

    with ZkCluster(3) as cluster:               # 127.0.0.2-4, serving once start() returns
        cluster.kill(cluster.leader)
        cluster.wait_leader()

A pytest plugin comes with it (zkfast.testing.pytest_plugin, registered as `zkfast`): the fixtures
`zk_server`, `zk_client` and `zk_cluster`. docs/testing.md in the repository describes it all.
"""

from zkfast.testing.cluster import ZkCluster
from zkfast.testing.kinds import KINDS, apache_available
from zkfast.testing.partition import PartitionUnavailable, iptables_unavailable
from zkfast.testing.ports import free_port
from zkfast.testing.proxy import TcpProxy
from zkfast.testing.server import DEFAULT_TICK_TIME_MS, ServerExited, ZkServer, digest
from zkfast.testing.session import close_session, expire_session
from zkfast.testing.words import four_letter

__all__ = [
    "DEFAULT_TICK_TIME_MS",
    "KINDS",
    "PartitionUnavailable",
    "ServerExited",
    "TcpProxy",
    "ZkCluster",
    "ZkServer",
    "apache_available",
    "close_session",
    "digest",
    "expire_session",
    "four_letter",
    "free_port",
    "iptables_unavailable",
]
