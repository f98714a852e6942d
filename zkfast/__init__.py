"""zkfast: a ZooKeeper server with a Cython hot path, a drop-in for Apache ZooKeeper 3.8."""

from zkfast.version import FULL_VERSION as __version__

__all__ = ["__version__"]
