"""Moved to zkfast.javaorder, where the Cython modules may use it too; this name stays for importers
not yet switched (server/auth.py, net/connection.py)."""

from __future__ import annotations

from zkfast.javaorder import auth_set_order as auth_set_order
