"""Command line entry point: ``python3 -m audit_intake --config PATH``.

SIGHUP re-reads PATH and applies new tokens and a new certificate in place; SIGTERM or SIGINT
stops (batches not yet settled stay in the spool for the next start). Exits 0 after a stop, 2 on
an invalid configuration, 1 when the service cannot start (a port taken, a PEM that does not
load, a spool it cannot open).
"""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from audit_intake.config import ConfigError, load_config
from audit_intake.service import BIND_WAIT_SECONDS, Intake

logger = logging.getLogger("audit_intake")

_SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the intake until a stop signal, reloading on SIGHUP; return the exit status."""
    # Blocked before any thread starts, so every thread inherits the mask and only the main
    # thread takes them, synchronously, with sigwait: no signal is lost or handled mid-call.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        return _serve(argv)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _serve(argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="audit_intake",
        description="Take kube-apiserver's audit webhook batches for Falco. "
        "SIGHUP reloads tokens and certificate; SIGTERM or SIGINT stops.",
    )
    parser.add_argument("--config", required=True, type=Path, help="JSON configuration file")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--bind-wait",
        type=float,
        default=BIND_WAIT_SECONDS,
        help="seconds to keep trying a webhook port in use",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
    )
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        logger.error("invalid configuration: %s", exc)
        return 2
    try:
        intake = Intake(config, bind_wait_seconds=args.bind_wait)
    except (OSError, ssl.SSLError) as exc:
        logger.error("cannot start: %s", exc)
        return 1
    with intake:
        while (signum := signal.sigwait(_SIGNALS)) == signal.SIGHUP:
            logger.info("received SIGHUP, reloading %s", args.config)
            intake.reload(args.config)
        logger.info("received %s, stopping", signal.Signals(signum).name)
    return 0
