"""Error codes and permissions of the client protocol, under the names older importers use.

They are declared once, in zkfast/_jute.pxd, for the Cython modules and Python alike; new code imports
them from zkfast._jute. What is left here goes once server/auth.py, server/sasl.py and quorum/driver.py
do too.
"""

from __future__ import annotations

from zkfast._jute import Code as Code
from zkfast._jute import Perm as Perm
from zkfast._jute import ZkError as ZkError
