"""The floor a forwarder is measured against, in its own process: read the log, POST each line.

    python3 benchmarks/bare_loop.py LOG URL

Reads the alert log line by line, parses each (what any reader must do to skip a malformed
line) and POSTs it as it is on one kept-alive connection, waiting for each answer; prints the
alerts per second from the first read to the last answer.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from urllib.parse import urlsplit


def main(log: str, url: str) -> None:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    count = 0
    started = time.perf_counter()
    with open(log, "rb") as stream:
        for line in stream:
            body = line.rstrip(b"\n")
            json.loads(body)
            connection.request("POST", parts.path or "/", body, headers)
            connection.getresponse().read()
            count += 1
    print(count / (time.perf_counter() - started))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
