"""The abuse suite's parts: hostile clients (attacks), what they cost a server (RSS sampler, probe
client, lost-write check), the bound each attack may cost zkfast (from zkfast.limits), and the
table that prints Apache ZooKeeper's figures beside zkfast's.

tests/test_abuse.py runs every case at CI size against both servers; bench/abuse.py runs the same
cases at larger sizes and prints the same table.
"""
