"""Falco's side: falco.yaml, the rules and their gate, reload confirmation, what Falco lists."""

from falco._cli_answers import RulesListingError
from falco._gate import GateRejectedError
from falco._service import FalcoService

__all__ = ["FalcoService", "GateRejectedError", "RulesListingError"]
