"""`http_output`: the operator's own endpoint, fed every alert as Falco's JSON, unchanged."""

from __future__ import annotations

from pydantic import field_validator

from falco_forwarder.config import FORMAT_FALCO_JSON, SinkConfig, url_problem
from options import Options, load_options
from sinks._source import SinkSource

NAME = "http_output"


class HttpOutputOptions(Options):
    """An http:// or https:// URL; empty for none."""

    http_output: str = ""

    @field_validator("http_output")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if value and (problem := url_problem(value)):
            raise ValueError(problem)
        return value


class HttpOutput(SinkSource):
    """The sink the ``http_output`` option names."""

    def read(self) -> list[SinkConfig]:
        url = load_options(HttpOutputOptions, self._charm.config).http_output
        return [SinkConfig(NAME, FORMAT_FALCO_JSON, url)] if url else []
