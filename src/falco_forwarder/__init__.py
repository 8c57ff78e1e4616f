"""Falco alert forwarder: receives Falco's http_output and fans each alert out to every sink.

Standard library only (Python >= 3.11), so it runs in its own container without the
charm's dependencies. The charm builds its configuration with `falco_forwarder.config`
and, after rewriting the file, sends SIGHUP: the forwarder applies it without closing
its listener, since Falco does not retry an alert posted while nothing listens.
"""
