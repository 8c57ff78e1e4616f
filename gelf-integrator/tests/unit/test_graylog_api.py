"""The REST client: token auth, no redirects, no token in any error, one deadline per call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fake_graylog import RawAnswer

import graylog_api
from graylog_api import (
    GraylogApi,
    GraylogHttpError,
    GraylogUnreachableError,
    GraylogUntrustedError,
)

TOKEN = "client-test-token-5e4d3c2b1a"


class _Scripted(BaseHTTPRequestHandler):
    """Answers every request with the server's (status, headers, body); records headers."""

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers))  # type: ignore[attr-defined]
        status, headers, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator:
    servers: list[ThreadingHTTPServer] = []

    def start(status: int, body: bytes = b"", **headers: str) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
        server.answer = (status, headers, body)  # type: ignore[attr-defined]
        server.seen = []  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def url(server: ThreadingHTTPServer, path: str = "/api") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_a_redirect_is_not_followed_so_the_token_stays_home(serve):
    elsewhere = serve(200, b"{}")
    redirecting = serve(302, Location=url(elsewhere, "/api/streams"))

    with pytest.raises(GraylogHttpError) as error:
        GraylogApi(url(redirecting), TOKEN).get("/streams")

    assert error.value.status == 302
    assert elsewhere.seen == []  # type: ignore[attr-defined]


def test_an_answer_that_is_not_json_is_an_error(serve):
    server = serve(200, b"<html>login</html>")

    with pytest.raises(GraylogHttpError, match="answer is not JSON"):
        GraylogApi(url(server), TOKEN).get("/streams")


def test_an_error_without_a_json_body_keeps_its_text_on_one_line(serve):
    server = serve(502, b"Bad gateway\n  upstream down")

    with pytest.raises(GraylogHttpError) as error:
        GraylogApi(url(server), TOKEN).get("/streams")

    assert error.value.message == "Bad gateway upstream down"


def test_token_auth_and_csrf_header_are_sent_and_the_token_is_not_in_repr(serve):
    server = serve(200, b'{"version": "7.1.7"}')
    api = GraylogApi(url(server), TOKEN)

    assert api.get("/") == {"version": "7.1.7"}

    (headers,) = server.seen  # type: ignore[attr-defined]
    assert headers["Authorization"] == "Basic Y2xpZW50LXRlc3QtdG9rZW4tNWU0ZDNjMmIxYTp0b2tlbg=="
    assert headers["X-Requested-By"] == "gelf-integrator"
    assert TOKEN not in repr(api)
    assert api.log.requests == [("GET", "/")]


# -- the whole exchange has one deadline ------------------------------------------------------

HELLO = b'{"version": "7.1.7+3b6c2a1", "tagline": "Manage your logs in the dark"}'
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(HELLO),
    HELLO,
)


@pytest.mark.parametrize(
    "raw",
    [
        RawAnswer(ANSWER, seconds_per_byte=0.05),  # ~6 s in all, each byte well in time
        RawAnswer(b"H", seconds_per_byte=4.0),  # one byte, then nothing for longer than allowed
    ],
    ids=["dribbled", "stalled"],
)
def test_a_slow_answer_ends_at_the_calls_deadline_not_at_a_per_read_timeout(make_graylog, raw):
    graylog = make_graylog()
    graylog.raw[("GET", "/api/")] = raw
    api = GraylogApi(graylog.url, "admin-token", budget_seconds=0.5)

    started = time.monotonic()
    with pytest.raises(GraylogUnreachableError, match=r"^no whole answer within 0\.5 s$"):
        api.get("/")

    assert time.monotonic() - started < 2.5  # leeway for a loaded machine


def test_the_deadline_covers_every_call_of_a_client(make_graylog):
    graylog = make_graylog()
    api = GraylogApi(graylog.url, "admin-token", budget_seconds=0.3)
    assert api.get("/")["version"] == graylog.version
    time.sleep(0.3)

    with pytest.raises(GraylogUnreachableError, match=r"no whole answer within 0\.3 s"):
        api.get("/streams")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", "SSH-2.0-OpenSSH_9.6"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", "IncompleteRead"),
        (b"", "Remote end closed connection without response"),
    ],
    ids=["not-http", "truncated", "closed"],
)
def test_a_broken_answer_is_no_answer_not_a_crash(make_graylog, raw, reason):
    graylog = make_graylog()
    graylog.raw[("GET", "/api/streams")] = RawAnswer(raw)

    with pytest.raises(GraylogUnreachableError) as error:
        GraylogApi(graylog.url, "admin-token").get("/streams")

    assert reason in str(error.value)


@pytest.mark.parametrize("status", [200, 500])
def test_an_answer_nested_deeper_than_the_parser_goes_is_no_crash(serve, status):
    server = serve(status, b"[" * 100_000)

    with pytest.raises(GraylogHttpError, match=f"HTTP {status}: "):
        GraylogApi(url(server), TOKEN).get("/streams")


def test_an_answer_over_the_size_cap_is_refused(make_graylog, monkeypatch):
    graylog = make_graylog()
    monkeypatch.setattr(graylog_api, "MAX_ANSWER_BYTES", 64)

    with pytest.raises(GraylogUnreachableError, match="answer over 64 bytes"):
        GraylogApi(graylog.url, "admin-token").get("/streams")


def test_a_ca_that_looks_like_pem_but_is_none_is_untrusted_not_a_crash(make_graylog, tls_server):
    graylog = make_graylog(tls=tls_server[0])
    lookalike = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"

    with pytest.raises(GraylogUntrustedError, match="ca_cert cannot be loaded as a CA"):
        GraylogApi(graylog.url, "admin-token", ca_cert=lookalike).get("/")
