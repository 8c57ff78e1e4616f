"""Every kind of sink, in the order the status names them: a new kind is one line here."""

from __future__ import annotations

from sinks._falcosidekick import Falcosidekick
from sinks._graylog import Graylog
from sinks._http_output import HttpOutput
from sinks._loki import Loki
from sinks._otlp import Otlp
from sinks._source import SinkSource

SINK_KINDS: tuple[type[SinkSource], ...] = (HttpOutput, Graylog, Falcosidekick, Loki, Otlp)
