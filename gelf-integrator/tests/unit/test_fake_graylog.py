"""The fake Graylog keeps Graylog's own rules, so tests against it mean something.

Each case is a rule read in Graylog 6.3.15 / 7.1.7 (see fake_graylog's docstring); the
provisioning tests rely on them (a client that forgot X-Requested-By or sent the 6.x
body to 7.x would fail here first).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest
from fake_graylog import FakeGraylog, GelfRejectedError, decode_gelf, free_port, send_to_input

AUTH = "Basic " + base64.b64encode(b"admin-token:token").decode()
INDEX_SET = "6650a1b2c3d4e5f601234567"
STREAM = {
    "title": "t",
    "description": "d",
    "rules": [],
    "matching_type": "AND",
    "remove_matches_from_default_stream": False,
    "index_set_id": INDEX_SET,
}


def call(
    graylog: FakeGraylog, method: str, path: str, body=None, headers=None
) -> tuple[int, dict]:
    request = urllib.request.Request(
        graylog.url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        with e:
            return e.code, json.loads(e.read() or b"{}")


def test_a_write_without_x_requested_by_is_a_400(graylog):
    status, answer = call(graylog, "POST", "/streams", {"entity": STREAM}, {"Authorization": AUTH})

    assert status == 400
    assert "X-Requested-By" in answer["message"]
    assert len(graylog.streams) == 1  # only the default stream


def test_a_request_without_a_valid_token_is_a_401(graylog):
    wrong = "Basic " + base64.b64encode(b"admin-token:password").decode()

    assert call(graylog, "GET", "/streams")[0] == 401
    assert call(graylog, "GET", "/streams", headers={"Authorization": wrong})[0] == 401


@pytest.mark.parametrize(
    ("version", "good", "bad"),
    [
        ("7.1.7+3b6c2a1", {"entity": STREAM, "share_request": None}, STREAM),
        ("6.3.15+a1f0c44", STREAM, {"entity": STREAM, "share_request": None}),
    ],
)
def test_each_version_takes_only_its_own_stream_body(make_graylog, version, good, bad):
    graylog = make_graylog(version=version)
    headers = {"Authorization": AUTH, "X-Requested-By": "test"}

    assert call(graylog, "POST", "/streams", bad, headers)[0] == 400
    status, created = call(graylog, "POST", "/streams", good, headers)

    assert status == 201
    assert graylog.streams[created["stream_id"]]["disabled"] is True  # new streams are paused


def test_an_input_port_is_not_range_checked_and_the_input_fails(graylog):
    headers = {"Authorization": AUTH, "X-Requested-By": "test"}
    body = {
        "title": "x",
        "type": "org.graylog2.inputs.gelf.http.GELFHttpInput",
        "global": True,
        "configuration": {"bind_address": "0.0.0.0", "port": 70000, "recv_buffer_size": 1},
        "node": None,
    }

    status, created = call(graylog, "POST", "/system/inputs", body, headers)

    assert status == 201
    _, states = call(graylog, "GET", "/system/inputstates", headers=headers)
    (state,) = states["states"]
    assert (state["id"], state["state"]) == (created["id"], "FAILED")
    assert state["message_input"]["attributes"]["port"] == 70000


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"version": "1.1", "host": "h"}, 'missing mandatory "short_message" or "message"'),
        ({"host": "h", "short_message": "  "}, 'empty mandatory "short_message"'),
        ({"host": "", "short_message": "m"}, 'empty mandatory "host"'),
        ({"host": 5, "short_message": "m"}, 'invalid "host"'),
        ({"host": "h", "short_message": 7}, 'invalid "short_message"'),
        ([], "could not be parsed"),
    ],
)
def test_the_gelf_decoder_rejects_what_graylog_rejects(message, reason):
    with pytest.raises(GelfRejectedError, match=reason):
        decode_gelf(json.dumps(message).encode())


def test_the_gelf_decoder_stores_fields_as_graylog_does():
    fields = decode_gelf(
        json.dumps(
            {
                "version": "1.1",
                "host": "falco-k8s-0",
                "short_message": "  m  ",
                "timestamp": 1795756046.5,
                "level": 4,
                "_juju_model": "cos",
                "_privileged": True,
                "_nothing": None,
                "_images": ["nginx"],
                "_big": 2**63,
                "_bad key": "x",
                "__id": "reserved",
                "_empty": "",
            }
        ).encode()
    )

    assert fields == {
        "message": "m",
        "source": "falco-k8s-0",
        "timestamp": 1795756046.5,
        "level": 4,
        "juju_model": "cos",
        "images": '["nginx"]',
        "big": -(2**63),
    }


def test_the_gelf_input_answers_like_graylogs_http_handler(graylog):
    port = free_port()
    headers = {"Authorization": AUTH, "X-Requested-By": "test"}
    body = {
        "title": "x",
        "type": "org.graylog2.inputs.gelf.http.GELFHttpInput",
        "global": True,
        "configuration": {
            "bind_address": "0.0.0.0",
            "port": port,
            "recv_buffer_size": 1,
            "max_chunk_size": 100,
        },
    }
    assert call(graylog, "POST", "/system/inputs", body, headers)[0] == 201

    def post(path: str, data: bytes, method: str = "POST") -> int:
        return send_to_input(port, data, path=path, method=method)

    assert post("/gelf", b'{"host": "h", "short_message": "m"}') == 202
    assert post("/", b'{"host": "h", "short_message": "m"}') == 404
    assert post("/gelf", b"", method="GET") == 405
    assert post("/gelf", b"x" * 101) == 413
    assert post("/gelf", b'{"host": "h"}') == 202  # answered before decoding: lost all the same
    (received,) = graylog.wait_for_messages(1)
    assert received.fields["message"] == "m"
    (gelf_input,) = graylog.inputs.values()
    assert gelf_input.rejected == ['is missing mandatory "short_message" or "message" field.']
