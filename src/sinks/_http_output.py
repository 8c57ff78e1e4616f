"""`http_output`: the operator's own endpoint, fed every alert as Falco's JSON, unchanged."""

from __future__ import annotations

from dataclasses import dataclass

from falco_forwarder.config import FORMAT_FALCO_JSON, SinkConfig, url_problem
from options import load_options, option_error
from sinks._source import SinkSource

NAME = "http_output"


@dataclass(frozen=True)
class HttpOutputOptions:
    """An http:// or https:// URL; empty for none."""

    http_output: str = ""

    def __post_init__(self) -> None:
        url = self.http_output.strip()
        if url and (problem := url_problem(url)):
            raise option_error("http_output", problem)
        object.__setattr__(self, "http_output", url)


class HttpOutput(SinkSource):
    """The sink the ``http_output`` option names."""

    def read(self) -> list[SinkConfig]:
        url = load_options(HttpOutputOptions, self._charm.config).http_output
        return [SinkConfig(NAME, FORMAT_FALCO_JSON, url)] if url else []
