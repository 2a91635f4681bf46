"""The S3-compatible server of the tests: moto's S3 on a free loopback port.

Prints the port on stdout, then serves until stdin closes (when the test process that
started it ends, however it ends), so no server outlives its tests.

Uploads in parts are dated: moto lists every one as begun on 2010-11-10, while S3 says when
each was begun (compaction aborts those a killed writer left, by age); the time each upload
is created here is put into listings.

Faults, for the fault tests (each counts requests to the bucket API; GET /_faults tells how
many were injected, as JSON):
  --fail-every N   answer every Nth request with 503 SlowDown, as a throttled S3 does
  --drop-part N    close the connection, without an answer, on the Nth UploadPart request
  --record         keep every request line; GET /_requests returns them as a JSON array of
                   "METHOD /bucket/key?query" strings (for tests that count requests)
"""

import argparse
import json
import logging
import re
import sys
import threading
import time
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)


class Faults:
    """WSGI middleware that injects the faults asked for."""

    def __init__(self, app, fail_every, drop_part, record):
        self.app = app
        self.record = record
        self.lines = []
        self.fail_every = fail_every
        self.drop_part = drop_part
        self.requests = 0
        self.parts = 0
        self.failed = 0
        self.dropped = 0
        self.lock = threading.Lock()
        # moto checks a write's If-Match / If-None-Match and then stores, in two steps, on
        # several request threads at once; S3 does both as one. Conditional writes are run
        # one at a time here, so the test server keeps S3's promise.
        self.conditional = threading.Lock()
        # Upload id of each upload in parts created here -> when, as S3 writes it.
        self.initiated = {}

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/_faults":
            body = ('{"failed": %d, "dropped": %d}' % (self.failed, self.dropped)).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        if environ.get("PATH_INFO") == "/_requests":
            with self.lock:
                body = json.dumps(self.lines).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        query = environ.get("QUERY_STRING", "")
        if "uploads" in parse_qs(query, keep_blank_values=True) and environ["REQUEST_METHOD"] in ("GET", "POST"):
            return self.dated_uploads(environ, start_response)
        is_part = "partNumber=" in query and "uploadId=" in query and environ["REQUEST_METHOD"] == "PUT"
        with self.lock:
            self.requests += 1
            if self.record:
                line = "%s %s" % (environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
                self.lines.append(line + ("?" + query if query else ""))
            fail = self.fail_every and self.requests % self.fail_every == 0
            if is_part:
                self.parts += 1
            drop = is_part and self.drop_part and self.parts == self.drop_part
            self.failed += 1 if fail else 0
            self.dropped += 1 if drop else 0
        if fail:
            drain(environ)
            start_response("503 Slow Down", [("Content-Type", "application/xml")])
            return [SLOW_DOWN]
        if drop:
            drain(environ)
            return dropped(start_response)
        if environ["REQUEST_METHOD"] in ("PUT", "POST") and (
            "HTTP_IF_MATCH" in environ or "HTTP_IF_NONE_MATCH" in environ
        ):
            with self.conditional:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


    def dated_uploads(self, environ, start_response):
        """Notes when an upload in parts is created; puts that time into listings."""
        answer = {}

        def capture(status, headers, exc_info=None):
            answer["status"], answer["headers"] = status, headers

        text = b"".join(self.app(environ, capture)).decode("utf-8")
        if environ["REQUEST_METHOD"] == "POST":
            now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            with self.lock:
                for upload_id in re.findall(r"<UploadId>([^<]*)</UploadId>", text):
                    self.initiated[upload_id] = now
        else:
            text = re.sub(r"<Upload>.*?</Upload>", self.redate, text, flags=re.S)
        body = text.encode("utf-8")
        headers = [(k, v) for k, v in answer["headers"] if k.lower() != "content-length"]
        start_response(answer["status"], headers + [("Content-Length", str(len(body)))])
        return [body]

    def redate(self, match):
        block = match.group(0)
        found = re.search(r"<UploadId>([^<]*)</UploadId>", block)
        with self.lock:
            when = found and self.initiated.get(found.group(1))
        if not when:
            return block
        return re.sub(r"<Initiated>[^<]*</Initiated>", "<Initiated>%s</Initiated>" % when, block)


def drain(environ):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    while length > 0:
        got = stream.read(min(length, 1 << 20))
        if not got:
            break
        length -= len(got)


def dropped(start_response):
    """Promises a body and ends the connection before sending it."""
    start_response("200 OK", [("Content-Length", "1000")])
    yield b""
    raise ConnectionAbortedError("fault: connection dropped mid-multipart")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail-every", type=int, default=0)
    parser.add_argument("--drop-part", type=int, default=0)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = Faults(DomainDispatcherApplication(create_backend_app), args.fail_every, args.drop_part, args.record)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
