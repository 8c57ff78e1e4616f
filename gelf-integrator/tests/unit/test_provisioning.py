"""Provisioning against the fake Graylog: idempotence, pause on removal, every error path."""

from __future__ import annotations

import json

import pytest
from fake_graylog import ALL_PERMISSIONS, FakeGraylog, GelfInput, free_port, send_to_input

from graylog_api import GraylogApi
from provisioning import (
    GELF_HTTP_INPUT,
    ProvisioningBlockedError,
    ProvisioningWaitingError,
    Sender,
    owner_marker,
    provision,
)

TOKEN = "1q2w3e4r5t6y7u8i9o0p-graylog-api-token"
OWNER = "graylog-side/gelf-integrator"
FALCO = Sender("cos", "falco-k8s")
FALCO_2 = Sender("edge", "falco-edge")


def run(graylog: FakeGraylog, senders=(FALCO,), *, port: int, token: str = "admin-token", **kw):
    api = GraylogApi(graylog.url, token)
    return provision(api, port=port, max_message_bytes=65536, senders=senders, owner=OWNER, **kw)


def post_gelf(port: int, message: dict, headers: dict | None = None) -> int:
    return send_to_input(port, json.dumps(message).encode(), headers=headers)


def our_streams(graylog: FakeGraylog) -> dict[str, dict]:
    return {s["title"]: s for s in graylog.streams.values() if not s.get("is_default")}


def test_first_run_creates_a_running_input_and_a_started_stream(graylog):
    port = free_port()

    done = run(graylog, port=port)

    assert graylog.writes == [
        ("POST", "/api/system/inputs"),
        ("POST", "/api/streams"),
        (
            "POST",
            f"/api/streams/{our_streams(graylog)['Falco alerts: cos/falco-k8s']['id']}/resume",
        ),
    ]
    (created,) = graylog.inputs.values()
    assert created.summary["type"] == GELF_HTTP_INPUT
    assert created.summary["global"] is True
    assert created.summary["attributes"]["port"] == port
    assert created.summary["attributes"]["max_chunk_size"] == 65536
    assert created.state == "RUNNING"
    stream = our_streams(graylog)["Falco alerts: cos/falco-k8s"]
    assert stream["disabled"] is False
    assert stream["index_set_id"] == graylog.index_sets[0]["id"]
    assert stream["matching_type"] == "AND"
    assert {(r["field"], r["value"], r["type"]) for r in stream["rules"]} == {
        ("juju_model", "cos", 1),
        ("juju_application", "falco-k8s", 1),
    }
    assert stream["description"].endswith(owner_marker(OWNER))
    assert done.version == graylog.version
    assert done.running_streams == ("Falco alerts: cos/falco-k8s",)


def test_second_run_makes_no_write_request(graylog):
    port = free_port()
    run(graylog, port=port)
    first = len(graylog.writes)
    graylog.requests.clear()

    again = run(graylog, port=port)

    assert first == 3
    assert graylog.writes == []
    assert [m for m, _ in graylog.requests] == ["GET"] * len(graylog.requests)
    assert again.input_id == next(iter(graylog.inputs))


def test_the_stream_routes_what_the_input_decodes(graylog):
    port = free_port()
    run(graylog, port=port)

    status = post_gelf(
        port,
        {
            "version": "1.1",
            "host": "falco-k8s-0",
            "short_message": "Create Privileged Pod",
            "_juju_model": "cos",
            "_juju_application": "falco-k8s",
        },
    )

    assert status == 202
    (message,) = graylog.wait_for_messages(1)
    assert message.fields["juju_model"] == "cos"
    assert "Falco alerts: cos/falco-k8s" in message.streams


def test_two_senders_get_a_stream_each_and_a_removed_one_is_paused_not_deleted(graylog):
    port = free_port()
    run(graylog, senders=[FALCO, FALCO_2], port=port)
    assert sorted(our_streams(graylog)) == [
        "Falco alerts: cos/falco-k8s",
        "Falco alerts: edge/falco-edge",
    ]
    graylog.requests.clear()

    done = run(graylog, senders=[FALCO], port=port)

    edge = our_streams(graylog)["Falco alerts: edge/falco-edge"]
    assert graylog.writes == [("POST", f"/api/streams/{edge['id']}/pause")]
    assert edge["disabled"] is True
    assert done.paused_streams == ("Falco alerts: edge/falco-edge",)
    graylog.requests.clear()
    run(graylog, senders=[FALCO], port=port)
    assert graylog.writes == []


def test_a_returning_sender_resumes_its_paused_stream(graylog):
    port = free_port()
    run(graylog, port=port)
    run(graylog, senders=[], port=port)
    stream = our_streams(graylog)["Falco alerts: cos/falco-k8s"]
    assert stream["disabled"] is True
    graylog.requests.clear()

    run(graylog, port=port)

    assert graylog.writes == [("POST", f"/api/streams/{stream['id']}/resume")]
    assert len(our_streams(graylog)) == 1


def test_a_removed_routing_rule_is_put_back_and_others_stay(graylog):
    port = free_port()
    run(graylog, port=port)
    stream = our_streams(graylog)["Falco alerts: cos/falco-k8s"]
    stream["rules"] = [r for r in stream["rules"] if r["field"] != "juju_application"]
    stream["rules"].append({"field": "level", "value": "4", "type": 1, "inverted": False})
    graylog.requests.clear()

    run(graylog, port=port)

    assert graylog.writes == [("POST", f"/api/streams/{stream['id']}/rules")]
    assert {(r["field"], r["value"]) for r in stream["rules"]} == {
        ("juju_model", "cos"),
        ("juju_application", "falco-k8s"),
        ("level", "4"),
    }


def test_streams_it_did_not_create_are_never_touched(graylog):
    port = free_port()
    foreign_id = graylog.new_id()
    graylog.streams[foreign_id] = {
        "id": foreign_id,
        "title": "Falco alerts: cos/falco-k8s",
        "description": "made by hand",
        "rules": [],
        "matching_type": "AND",
        "disabled": False,
        "index_set_id": graylog.index_sets[0]["id"],
    }
    other_owner = graylog.new_id()
    graylog.streams[other_owner] = {
        **graylog.streams[foreign_id],
        "id": other_owner,
        "title": "Falco alerts: other/app",
        "description": f"x. {owner_marker('elsewhere/gelf-integrator')}",
    }

    run(graylog, senders=[], port=port)

    assert graylog.streams[foreign_id]["disabled"] is False
    assert graylog.streams[other_owner]["disabled"] is False
    assert not any(path.startswith("/api/streams/") for _, path in graylog.writes)


def test_a_stopped_input_is_started(graylog):
    port = free_port()
    run(graylog, port=port)
    (input_id,) = graylog.inputs
    graylog.stop_input(input_id)
    graylog.requests.clear()

    run(graylog, port=port)

    assert graylog.writes == [("PUT", f"/api/system/inputstates/{input_id}")]
    assert graylog.inputs[input_id].state == "RUNNING"


def test_an_existing_global_gelf_http_input_on_the_port_is_reused(graylog):
    port = free_port()
    run(graylog, port=port)
    graylog.requests.clear()

    run(graylog, senders=[FALCO_2], port=port)

    assert ("POST", "/api/system/inputs") not in graylog.writes
    assert len(graylog.inputs) == 1


def test_a_port_held_by_another_kind_of_input_blocks(graylog):
    port = free_port()
    input_id = graylog.new_id()
    graylog.inputs[input_id] = GelfInput(
        summary={
            "id": input_id,
            "title": "Syslog",
            "type": "org.graylog2.inputs.syslog.tcp.SyslogTCPInput",
            "global": True,
            "attributes": {"port": port},
        }
    )

    with pytest.raises(
        ProvisioningBlockedError, match=f"port {port} is taken by Graylog input 'Syslog'"
    ):
        run(graylog, port=port)
    assert graylog.writes == []


def test_a_failed_input_is_restarted_and_reported(graylog, make_graylog):
    port = free_port()
    run(graylog, port=port)
    (input_id,) = graylog.inputs
    graylog.stop_input(input_id)
    graylog.inputs[input_id].state = "FAILED"
    graylog.inputs[input_id].detailed_message = "Address already in use"

    with pytest.raises(
        ProvisioningBlockedError,
        match=f"^gelf_url: Graylog input on port {port} was FAILED: Address already in use; asked",
    ):
        run(graylog, port=port)
    assert graylog.writes[-1] == ("PUT", f"/api/system/inputstates/{input_id}")


def test_a_rejected_token_is_blocked_without_echoing_it(graylog):
    with pytest.raises(ProvisioningBlockedError) as error:
        run(graylog, port=free_port(), token=TOKEN)

    assert str(error.value) == "api_token_secret: Graylog rejected the token (HTTP 401)"
    assert TOKEN not in str(error.value)
    assert graylog.writes == []


@pytest.mark.parametrize(
    ("granted", "missing", "request_line"),
    [
        (
            ALL_PERMISSIONS - {"*"} | {"inputs:read", "streams:read", "indexsets:read"},
            "inputs:create",
            "POST /api/system/inputs",
        ),
        (
            frozenset(
                {
                    "inputs:read",
                    "inputs:create",
                    f"inputtypes:create:{GELF_HTTP_INPUT}",
                    "streams:read",
                    "indexsets:read",
                }
            ),
            "streams:create",
            "POST /api/streams",
        ),
        (
            frozenset(
                {
                    "inputs:read",
                    "inputs:create",
                    f"inputtypes:create:{GELF_HTTP_INPUT}",
                    "streams:read",
                    "streams:create",
                    "indexsets:read",
                }
            ),
            "streams:changestate",
            "POST /api/streams/",
        ),
    ],
    ids=["inputs:create", "streams:create", "streams:changestate"],
)
def test_a_missing_permission_is_named(graylog, granted, missing, request_line):
    graylog.tokens[TOKEN] = frozenset(granted)

    with pytest.raises(ProvisioningBlockedError) as error:
        run(graylog, port=free_port(), token=TOKEN)

    message = str(error.value)
    assert message.startswith(f"api_token_secret: the token's user lacks {missing}")
    assert f"(HTTP 403 on {request_line}" in message
    assert TOKEN not in message


def test_an_unexpected_answer_is_blocked_with_status_and_graylogs_message(graylog):
    graylog.fail[("POST", "/api/streams")] = (500, "MongoDB write failed: not primary")

    with pytest.raises(ProvisioningBlockedError) as error:
        run(graylog, port=free_port())

    assert str(error.value) == (
        "api_url: POST /api/streams: HTTP 500: MongoDB write failed: not primary"
    )


def test_graylogs_message_never_carries_the_token(graylog):
    graylog.tokens[TOKEN] = ALL_PERMISSIONS
    graylog.fail[("GET", "/api/streams")] = (500, f"bad credentials {TOKEN} for user")

    with pytest.raises(ProvisioningBlockedError) as error:
        run(graylog, port=free_port(), token=TOKEN)

    assert TOKEN not in str(error.value)
    assert "bad credentials <token> for user" in str(error.value)


def test_an_unreachable_graylog_is_waiting():
    api = GraylogApi(f"http://127.0.0.1:{free_port()}/api", TOKEN)

    with pytest.raises(ProvisioningWaitingError) as error:
        provision(api, port=12201, max_message_bytes=65536, senders=[FALCO], owner=OWNER)

    assert str(error.value) == "api_url: Graylog API: Connection refused; retrying"
    assert TOKEN not in str(error.value)


def test_an_unsupported_version_blocks(make_graylog):
    graylog = make_graylog(version="5.2.12+1a2b3c4")

    with pytest.raises(
        ProvisioningBlockedError, match=r"Graylog 5\.2\.12\+1a2b3c4 is not supported"
    ):
        run(graylog, port=free_port())
    assert graylog.writes == []


def test_the_new_input_requires_the_auth_header(graylog):
    port = free_port()
    run(graylog, port=port, auth=("X-Gelf-Token", "s3cret-input-value"))

    message = {"version": "1.1", "host": "h", "short_message": "m"}
    assert post_gelf(port, message) == 401
    assert post_gelf(port, message, {"X-Gelf-Token": "s3cret-input-value"}) == 202


def test_https_with_the_ca_cert_provisions_and_without_it_blocks(make_graylog, tls_server):
    context, ca_pem = tls_server
    graylog = make_graylog(tls=context)
    port = free_port()

    with pytest.raises(ProvisioningBlockedError) as untrusted:
        provision(
            GraylogApi(graylog.url, "admin-token"),
            port=port,
            max_message_bytes=65536,
            senders=[FALCO],
            owner=OWNER,
        )
    done = provision(
        GraylogApi(graylog.url, "admin-token", ca_cert=ca_pem),
        port=port,
        max_message_bytes=65536,
        senders=[FALCO],
        owner=OWNER,
    )

    assert str(untrusted.value).startswith("ca_cert: Graylog API certificate not trusted (")
    assert graylog.url.startswith("https://")
    assert done.running_streams == ("Falco alerts: cos/falco-k8s",)


# -- answers without what Graylog always sends ------------------------------------------------


def _without(key: str, listing: str | None = None):
    """A rewrite dropping ``key`` from the answer, or from each object listed under ``listing``."""

    def rewrite(answer):
        if listing is None:
            return {k: v for k, v in answer.items() if k != key}
        items = [{k: v for k, v in item.items() if k != key} for item in answer[listing]]
        return {**answer, listing: items}

    return rewrite


def _pause_ours(graylog: FakeGraylog) -> None:
    for stream in our_streams(graylog).values():
        stream["disabled"] = True


@pytest.mark.parametrize(
    ("route", "rewrite", "prepare", "problem"),
    [
        (
            ("POST", "/api/system/inputs"),
            _without("id"),
            None,
            "POST /system/inputs answered without 'id'",
        ),
        (
            ("GET", "/api/system/inputs"),
            _without("id", "inputs"),
            "run",
            "GET /system/inputs answered without 'id'",
        ),
        (
            ("GET", "/api/streams"),
            _without("title", "streams"),
            "run",
            "GET /streams answered without 'title'",
        ),
        (
            ("GET", "/api/streams"),
            _without("id", "streams"),
            _pause_ours,
            "GET /streams answered without 'id'",
        ),
        (
            ("POST", "/api/streams"),
            lambda _: {"stream_id": "../../system"},
            None,
            "POST /streams answered an invalid 'stream_id'",
        ),
        (
            ("GET", "/api/system/indices/index_sets"),
            _without("id", "index_sets"),
            None,
            "GET /system/indices/index_sets answered without 'id'",
        ),
    ],
    ids=["new-input", "input", "stream-title", "stream-id", "bad-stream-id", "index-set"],
)
def test_an_answer_without_an_id_or_title_blocks_naming_it(
    graylog, route, rewrite, prepare, problem
):
    port = free_port()
    if prepare == "run":
        run(graylog, port=port)
    elif prepare is not None:
        run(graylog, port=port)
        prepare(graylog)
    graylog.mangle[route] = rewrite

    with pytest.raises(ProvisioningBlockedError) as error:
        run(graylog, port=port)

    assert str(error.value) == f"api_url: {problem}"


# -- several clusters sharing one Graylog -----------------------------------------------------


def test_a_sender_naming_its_cluster_gets_a_stream_of_its_own_routing_on_cluster(graylog):
    port = free_port()
    prod, staging = Sender("cos", "falco-k8s", "prod-eu"), Sender("cos", "falco-k8s", "staging")

    run(graylog, senders=[prod, staging], port=port)

    streams = our_streams(graylog)
    assert sorted(streams) == [
        "Falco alerts: prod-eu/cos/falco-k8s",
        "Falco alerts: staging/cos/falco-k8s",
    ]
    assert {
        (r["field"], r["value"]) for r in streams["Falco alerts: prod-eu/cos/falco-k8s"]["rules"]
    } == {
        ("juju_model", "cos"),
        ("juju_application", "falco-k8s"),
        ("cluster", "prod-eu"),
    }
    alert = {"version": "1.1", "host": "falco-k8s-0", "short_message": "Create Privileged Pod"}
    topology = {"_juju_model": "cos", "_juju_application": "falco-k8s"}
    assert post_gelf(port, {**alert, **topology, "_cluster": "staging"}) == 202
    (message,) = graylog.wait_for_messages(1)
    assert "Falco alerts: staging/cos/falco-k8s" in message.streams
    assert "Falco alerts: prod-eu/cos/falco-k8s" not in message.streams


def test_a_sender_that_starts_naming_its_cluster_moves_to_a_new_stream(graylog):
    port = free_port()
    run(graylog, senders=[FALCO], port=port)
    graylog.requests.clear()

    done = run(graylog, senders=[Sender("cos", "falco-k8s", "prod-eu")], port=port)

    assert done.running_streams == ("Falco alerts: prod-eu/cos/falco-k8s",)
    assert done.paused_streams == ("Falco alerts: cos/falco-k8s",)
    assert our_streams(graylog)["Falco alerts: cos/falco-k8s"]["disabled"] is True
