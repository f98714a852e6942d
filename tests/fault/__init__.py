"""Fault-injection tools for the fault tests: crashfs (a FUSE filesystem that loses unsynced writes on a
"crash"), the pipelined write workload with its history checkers, and helpers for server processes."""
