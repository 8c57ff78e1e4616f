"""The REST client: token auth, no redirects, no token in any error."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from graylog_api import GraylogApi, GraylogHttpError

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
