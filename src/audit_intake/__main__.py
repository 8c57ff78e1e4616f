"""Allow ``python3 -m audit_intake``."""

from audit_intake.cli import main

raise SystemExit(main())
