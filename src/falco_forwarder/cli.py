"""Command line entry point: ``python3 -m falco_forwarder --config PATH``.

Exits 0 after SIGTERM or SIGINT (graceful stop), 2 on an invalid configuration and
1 if the service cannot start (e.g. the port is taken).
"""

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from falco_forwarder.config import ConfigError, load_config
from falco_forwarder.forwarder import Forwarder

logger = logging.getLogger("falco_forwarder")

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the forwarder until a stop signal; return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="falco_forwarder", description="Fan Falco http_output alerts out to sinks."
    )
    parser.add_argument("--config", required=True, type=Path, help="JSON configuration file")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )
    try:
        config = load_config(args.config)
    except ConfigError as e:
        logger.error("invalid configuration: %s", e)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in _STOP_SIGNALS}
    try:
        try:
            forwarder = Forwarder(config)
        except OSError as e:
            logger.error("cannot start: %s", e)
            return 1
        with forwarder:
            stop.wait()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
