"""A ctypes binding of Falco's plugin C API, enough to drive k8saudit and json as Falco does.

Written for these tests from plugin_api.h and plugin_types.h (API 3.11.0) of
falcosecurity/plugin-sdk-go v0.8.3, the SDK both plugins are built with; Falco 0.44.1 (libs
0.25.4) offers API 3.12.0 and checks compatibility as `api_version_compatible` does
(libs' plugin_loader.c). Only the calls Falco makes for a source + extractor plugin are bound.
"""

from __future__ import annotations

import ctypes
import json
import struct
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Falco 0.44.1 bundles libs 0.25.4, whose framework offers plugin API 3.12.0.
FRAMEWORK_API_VERSION = (3, 12, 0)

SUCCESS, FAILURE, TIMEOUT, EOF = 0, 1, -1, 2  # ss_plugin_rc
PLUGIN_EVENT_TYPE = 322  # PPME_PLUGINEVENT_E: params are the plugin ID (u32) and the data
_EVENT_HEADER = struct.Struct("<QQIHI")  # ss_plugin_event, packed: ts, tid, len, type, nparams

# ss_plugin_field_type, by the type names of get_fields()
_FIELD_TYPES = {
    "uint64": 8,
    "string": 9,
    "reltime": 20,
    "abstime": 21,
    "bool": 25,
    "ipaddr": 40,
    "ipnet": 41,
}


def api_version_compatible(required: str, offered: tuple[int, int, int]) -> bool:
    """Whether a framework offering ``offered`` loads a plugin requiring ``required``."""
    major, minor, patch = (int(part) for part in required.split("."))
    return major == offered[0] and (minor, patch) <= offered[1:]


class _Result(ctypes.Union):
    _fields_ = (
        ("str", ctypes.POINTER(ctypes.c_char_p)),
        ("u64", ctypes.POINTER(ctypes.c_uint64)),
        ("u32", ctypes.POINTER(ctypes.c_uint32)),
        ("boolean", ctypes.POINTER(ctypes.c_uint32)),
        ("buf", ctypes.c_void_p),
    )


class _ExtractField(ctypes.Structure):
    _fields_ = (
        ("res", _Result),
        ("res_len", ctypes.c_uint64),
        ("field_id", ctypes.c_uint32),
        ("field", ctypes.c_char_p),
        ("arg_key", ctypes.c_char_p),
        ("arg_index", ctypes.c_uint64),
        ("arg_present", ctypes.c_uint32),
        ("ftype", ctypes.c_uint32),
        ("flist", ctypes.c_uint32),
    )


class _EventInput(ctypes.Structure):
    _fields_ = (("evt", ctypes.c_void_p), ("evtnum", ctypes.c_uint64), ("evtsrc", ctypes.c_char_p))


class _FieldExtractInput(ctypes.Structure):
    _fields_ = (
        ("owner", ctypes.c_void_p),
        ("get_owner_last_error", ctypes.c_void_p),
        ("num_fields", ctypes.c_uint32),
        ("fields", ctypes.POINTER(_ExtractField)),
        ("table_reader", ctypes.c_void_p * 4),  # deprecated vtable, passed by value
        ("table_reader_ext", ctypes.c_void_p),
        ("value_offsets", ctypes.c_void_p),
    )


class _InitInput(ctypes.Structure):
    _fields_ = (
        ("config", ctypes.c_char_p),
        ("owner", ctypes.c_void_p),
        ("get_owner_last_error", ctypes.c_void_p),
        ("tables", ctypes.c_void_p),
        ("log_fn", ctypes.c_void_p),
    )


class PluginError(Exception):
    """A plugin call failed; the message is the plugin's own last error."""


@dataclass(frozen=True)
class Event:
    """One event from next_batch, copied out of the plugin's memory."""

    number: int
    raw: bytes
    type: int
    plugin_id: int
    data: bytes

    @classmethod
    def parse(cls, number: int, pointer: int) -> Event:
        """Copy the event at ``pointer``: its header says how long it is."""
        length = _EVENT_HEADER.unpack(ctypes.string_at(pointer, _EVENT_HEADER.size))[2]
        raw = ctypes.string_at(pointer, length)
        _, _, _, type_, nparams = _EVENT_HEADER.unpack_from(raw)
        lengths = struct.unpack_from(f"<{nparams}I", raw, _EVENT_HEADER.size)
        offset = _EVENT_HEADER.size + 4 * nparams
        params: list[bytes] = []
        for size in lengths:
            params.append(raw[offset : offset + size])
            offset += size
        plugin_id = struct.unpack("<I", params[0])[0] if type_ == PLUGIN_EVENT_TYPE else 0
        data = params[1] if type_ == PLUGIN_EVENT_TYPE else b""
        return cls(number, raw, type_, plugin_id, data)


class Plugin:
    """A loaded plugin library. Go runtimes cannot be unloaded: load each library once."""

    def __init__(self, path: Path):
        self.path = path
        self.lib = ctypes.CDLL(str(path))
        self._declare()
        self.fields: list[dict[str, Any]] = json.loads(self.lib.plugin_get_fields())
        self._field_ids = {field["name"]: index for index, field in enumerate(self.fields)}

    def _declare(self) -> None:
        lib = self.lib
        for name in ("required_api_version", "version", "name", "fields", "event_source"):
            getattr(lib, f"plugin_get_{name}").restype = ctypes.c_char_p
        lib.plugin_get_init_schema.restype = ctypes.c_char_p
        lib.plugin_get_init_schema.argtypes = (ctypes.POINTER(ctypes.c_int),)
        lib.plugin_init.restype = ctypes.c_void_p
        lib.plugin_init.argtypes = (ctypes.POINTER(_InitInput), ctypes.POINTER(ctypes.c_int32))
        lib.plugin_destroy.argtypes = (ctypes.c_void_p,)
        lib.plugin_get_last_error.restype = ctypes.c_char_p
        lib.plugin_get_last_error.argtypes = (ctypes.c_void_p,)
        lib.plugin_extract_fields.argtypes = (
            ctypes.c_void_p,
            ctypes.POINTER(_EventInput),
            ctypes.POINTER(_FieldExtractInput),
        )
        if self.has_source:
            lib.plugin_get_id.restype = ctypes.c_uint32
            lib.plugin_open.restype = ctypes.c_void_p
            lib.plugin_open.argtypes = (
                ctypes.c_void_p,
                ctypes.c_char_p,
                ctypes.POINTER(ctypes.c_int32),
            )
            lib.plugin_close.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
            lib.plugin_next_batch.argtypes = (
                ctypes.c_void_p,
                ctypes.c_void_p,
                ctypes.POINTER(ctypes.c_uint32),
                ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p)),
            )

    @property
    def has_source(self) -> bool:
        """Whether the plugin has the event sourcing capability (open/next_batch/close)."""
        return hasattr(self.lib, "plugin_open")

    @property
    def name(self) -> str:
        return self.lib.plugin_get_name().decode()

    @property
    def version(self) -> str:
        return self.lib.plugin_get_version().decode()

    @property
    def required_api_version(self) -> str:
        return self.lib.plugin_get_required_api_version().decode()

    @property
    def event_source(self) -> str:
        return self.lib.plugin_get_event_source().decode() if self.has_source else ""

    @property
    def plugin_id(self) -> int:
        return self.lib.plugin_get_id()

    def init_schema(self) -> dict[str, Any]:
        """The JSON schema Falco validates init_config against before calling init."""
        schema_type = ctypes.c_int(0)
        text = self.lib.plugin_get_init_schema(ctypes.byref(schema_type))
        return json.loads(text) if schema_type.value == 1 and text else {}

    @contextmanager
    def initialized(self, config: str) -> Generator[PluginState]:
        """Init the plugin with ``config`` (JSON text, as Falco passes it); destroy it after."""
        rc = ctypes.c_int32(FAILURE)
        init_input = _InitInput(config=config.encode())
        handle = self.lib.plugin_init(ctypes.byref(init_input), ctypes.byref(rc))
        if rc.value != SUCCESS:
            # Falco would destroy this state, but plugin-sdk-go 0.8.3's before-destroy hook
            # stops async extraction that a failed init never started, and panics when no
            # other state is live. One leaked handle (of 255) per refused init is the cost.
            raise PluginError(self.last_error_of(handle) if handle else "init returned NULL")
        try:
            yield PluginState(self, handle)
        finally:
            self.lib.plugin_destroy(handle)

    def last_error_of(self, handle: int) -> str:
        message = self.lib.plugin_get_last_error(handle)
        return message.decode() if message else ""

    def field_id(self, name: str) -> int:
        """The index of ``name`` in get_fields(), which Falco passes as field_id."""
        return self._field_ids[name]

    def field(self, name: str) -> dict[str, Any] | None:
        """The get_fields() entry of ``name``, without any ``[arg]``."""
        index = self._field_ids.get(name)
        return None if index is None else self.fields[index]


class PluginState:
    """An initialized plugin (ss_plugin_t*): open instances and extract fields."""

    def __init__(self, plugin: Plugin, handle: int):
        self.plugin = plugin
        self.lib = plugin.lib
        self.handle = handle

    @property
    def last_error(self) -> str:
        """The plugin's message for the call that just failed (the SDK crashes if none did)."""
        return self.plugin.last_error_of(self.handle)

    @contextmanager
    def opened(self, params: str) -> Generator[Instance]:
        """Open an event source instance with ``params``; close it after."""
        rc = ctypes.c_int32(FAILURE)
        handle = self.lib.plugin_open(self.handle, params.encode(), ctypes.byref(rc))
        if rc.value != SUCCESS:
            raise PluginError(self.last_error)
        try:
            yield Instance(self, handle)
        finally:
            self.lib.plugin_close(self.handle, handle)

    def extract(self, event: Event, fields: Sequence[str], source: str) -> dict[str, list[Any]]:
        """Extract ``fields`` (``name`` or ``name[arg]``) from ``event``, each as a value list."""
        requests = (_ExtractField * len(fields))()
        keep: list[bytes] = []  # the C strings must outlive the call
        for request, text in zip(requests, fields, strict=True):
            name, _, arg = text.partition("[")
            spec = self.plugin.field(name)
            if spec is None:
                raise PluginError(f"{self.plugin.name} has no field {name}")
            keep.append(name.encode())
            request.field_id = self.plugin.field_id(name)
            request.field = keep[-1]
            request.ftype = _FIELD_TYPES[spec["type"]]
            request.flist = bool(spec.get("isList"))
            if arg:
                arg = arg.removesuffix("]")
                request.arg_present = 1
                if spec.get("arg", {}).get("isIndex"):
                    request.arg_index = int(arg)
                else:
                    keep.append(arg.encode())
                    request.arg_key = keep[-1]
        buffer = ctypes.create_string_buffer(event.raw, len(event.raw))
        event_input = _EventInput(ctypes.addressof(buffer), event.number, source.encode())
        extract_input = _FieldExtractInput(num_fields=len(fields), fields=requests)
        rc = self.lib.plugin_extract_fields(
            self.handle, ctypes.byref(event_input), ctypes.byref(extract_input)
        )
        if rc != SUCCESS:
            raise PluginError(self.last_error)
        return {text: _values(request) for text, request in zip(fields, requests, strict=True)}


def _values(request: _ExtractField) -> list[Any]:
    count = request.res_len
    if request.ftype == _FIELD_TYPES["string"]:
        return [request.res.str[i].decode() for i in range(count)]
    if request.ftype == _FIELD_TYPES["bool"]:
        return [bool(request.res.boolean[i]) for i in range(count)]
    return [request.res.u64[i] for i in range(count)]


class Instance:
    """An open event source instance (ss_instance_t*)."""

    def __init__(self, state: PluginState, handle: int):
        self._state = state
        self.lib = state.lib
        self.handle = handle
        self._count = 0

    def next_batch(self) -> tuple[int, list[Event]]:
        """One next_batch call: its return code and the events, copied out."""
        count = ctypes.c_uint32(0)
        events = ctypes.POINTER(ctypes.c_void_p)()
        rc = self.lib.plugin_next_batch(
            self._state.handle, self.handle, ctypes.byref(count), ctypes.byref(events)
        )
        batch: list[Event] = []
        for index in range(count.value):
            self._count += 1
            batch.append(Event.parse(self._count, events[index]))
        return rc, batch
