"""Where alerts go: one file per kind of sink, and the forwarder that delivers to them all."""

from sinks._alert_sinks import AlertSinks

__all__ = ["AlertSinks"]
