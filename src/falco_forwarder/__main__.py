"""Allow ``python3 -m falco_forwarder``."""

from falco_forwarder.cli import main

raise SystemExit(main())
