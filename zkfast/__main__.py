"""`python -m zkfast ...`: the same as the `zkfast` command."""

from zkfast.cli import main

raise SystemExit(main())
