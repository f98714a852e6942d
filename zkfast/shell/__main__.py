"""`python -m zkfast.shell ...`: the same as `zkfast shell ...`."""

import sys

from zkfast.shell import main

raise SystemExit(main(sys.argv[1:]))
