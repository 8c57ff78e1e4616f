"""Falco alert forwarder: tails Falco's JSON alert log and delivers each alert to every sink.

Standard library only (Python >= 3.11), so it runs in its own container without the
charm's dependencies. Falco's log is the queue: each sink keeps a checkpoint in it, so
alerts survive forwarder restarts and sink outages. The charm builds the configuration
with `falco_forwarder.config` and, after rewriting the file, sends SIGHUP: the forwarder
applies it in place.
"""
