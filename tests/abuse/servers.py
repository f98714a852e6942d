"""The servers the abuse cases run against: Apache ZooKeeper 3.8 and zkfast with the same zoo.cfg,
JVM flags and files, started together.

Pairs by name:
  shared  the connection limits set low enough to reach (maxClientCnxns, maxCnxns, a short
          nio.sessionlessCnxnTimeout), SASL enabled (a JAAS file with one user) so bad SASL tokens
          reach the mechanism, snapshots off the path of the measurements; one pair for the cases
          that leave nothing much behind;
  fresh   the same configuration on a new pair for one case: memory an earlier case freed is
          reused without showing in RSS (allocators keep it), so a case that follows one that
          grew the server by tens of MiB would hide its own growth (max-frames measured 17 MiB
          after the watch case instead of 47 MiB on its own), and a case that leaves a server busy
          must not take the next with it; a pair starts in about half a second;
  tls     the shared configuration with secureClientPort (Apache needs its Netty factory for it),
          a PKCS12 keystore made with the JDK's keytool, and ssl.clientAuth=none so a
          certificate-less client can complete a handshake after the half-open ones.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from testbase.process import ApacheZkProcess, ServerProcess, ZkfastProcess, free_port

KINDS = ("apache", "zkfast")  # Apache first: its figures are the reference printed beside zkfast's
TICK_TIME_MS = 2000
SESSIONLESS_CNXN_TIMEOUT_MS = 2000  # Apache's default is 10 s; shorter keeps the suite short
MAX_CLIENT_CNXNS = 20
SASL_PROVIDER = "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
SASL_USER, SASL_PASSWORD = "abuse", "abuse-secret"
JAAS = f"""Server {{
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_{SASL_USER}="{SASL_PASSWORD}";
}};
"""
KEYSTORE_PASSWORD = "abuse-store"
# a server an attack left busy is killed after this long: its figures are in, its exit is not measured
STOP_TIMEOUT_S = 5.0


def base_cfg(max_cnxns: int) -> dict[str, str]:
    return {
        "tickTime": str(TICK_TIME_MS),
        "maxClientCnxns": str(MAX_CLIENT_CNXNS),
        "maxCnxns": str(max_cnxns),
        # Apache reads it as zookeeper.nio.sessionlessCnxnTimeout: zoo.cfg keys it does not know
        # become `zookeeper.`-prefixed system properties before its connection factory starts
        "nio.sessionlessCnxnTimeout": str(SESSIONLESS_CNXN_TIMEOUT_MS),
        # a snapshot (every snapCount txns) during a case would be measured as the attack's cost
        "snapCount": "100000000",
        "authProvider.1": SASL_PROVIDER,
    }


def make_keystore(directory: Path) -> Path:
    """A PKCS12 keystore with one self-signed key for 127.0.0.1 (keytool ships with the JRE that
    runs Apache ZooKeeper; zkfast reads PKCS12 with `cryptography`)."""
    path = directory / "keystore.p12"
    subprocess.run(["keytool", "-genkeypair", "-alias", "server", "-keyalg", "RSA", "-keysize", "2048",
                    "-validity", "30", "-dname", "CN=localhost", "-ext", "SAN=ip:127.0.0.1,dns:localhost",
                    "-storetype", "PKCS12", "-keystore", str(path), "-storepass", KEYSTORE_PASSWORD,
                    "-keypass", KEYSTORE_PASSWORD], check=True, capture_output=True, timeout=60)
    return path


@dataclass
class Pair:
    """Both servers of one configuration; `secure_ports` (by kind) for the tls configuration."""

    name: str
    servers: dict[str, ServerProcess]
    files: Path
    secure_ports: dict[str, int] = field(default_factory=dict)

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop(timeout_s=STOP_TIMEOUT_S)
            s.cleanup()
        shutil.rmtree(self.files, ignore_errors=True)


def start_pair(name: str, max_cnxns: int) -> Pair:
    """Start Apache ZooKeeper and zkfast as pair `name` has them ("tls": with TLS)."""
    files = Path(tempfile.mkdtemp(prefix="zk-abuse-"))
    jaas = files / "jaas.conf"
    jaas.write_text(JAAS)
    flags = (f"-Djava.security.auth.login.config={jaas}",)
    cfgs = {kind: base_cfg(max_cnxns) for kind in KINDS}
    secure_ports: dict[str, int] = {}
    if name == "tls":
        keystore = make_keystore(files)
        for kind, cfg in cfgs.items():
            secure_ports[kind] = free_port()
            cfg |= {"secureClientPort": str(secure_ports[kind]), "secureClientPortAddress": "127.0.0.1",
                    "serverCnxnFactory": "org.apache.zookeeper.server.NettyServerCnxnFactory",
                    "ssl.keyStore.location": str(keystore), "ssl.keyStore.password": KEYSTORE_PASSWORD,
                    "ssl.keyStore.type": "PKCS12", "ssl.clientAuth": "none"}
    servers: dict[str, ServerProcess] = {
        "apache": ApacheZkProcess(cfg=cfgs["apache"], jvm_flags=flags),
        "zkfast": ZkfastProcess(cfg=cfgs["zkfast"], env={"SERVER_JVMFLAGS": " ".join(flags)}),
    }
    pair = Pair(name, servers, files, secure_ports)
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            for f in [pool.submit(s.start) for s in servers.values()]:
                f.result()
    except BaseException:
        pair.stop()
        raise
    return pair


FRESH = "fresh"


class Pairs:
    """The pairs a run of cases needs: each started on first use and stopped after the last case
    that uses it (a JVM keeps the heap an attack grew: 2 GB and more by the end of a run); a
    `fresh` pair serves one case."""

    def __init__(self, uses: Iterable[str], max_cnxns: int) -> None:
        self.remaining = Counter(uses)
        self.max_cnxns = max_cnxns
        self.started: dict[str, Pair] = {}

    def get(self, name: str) -> Pair:
        if name not in self.started:
            self.started[name] = start_pair(name, self.max_cnxns)
        return self.started[name]

    def done(self, name: str) -> None:
        self.remaining[name] -= 1
        if (self.remaining[name] <= 0 or name == FRESH) and name in self.started:
            self.started.pop(name).stop()

    def stop(self) -> None:
        while self.started:
            self.started.popitem()[1].stop()
