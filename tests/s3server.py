"""A local S3 endpoint for the tests: moto's server on a free localhost port, in a process
of its own (``python tests/s3server.py PORT``; in the test process, pyarrow's S3 client and
the server's threads deadlocked), reached by pyarrow, boto3 and Ray workers through the
standard variables.

moto checks ``If-None-Match: *`` and then stores the object in two steps, with other
request threads running in between (two racing conditional creates can both succeed,
which S3 itself never allows): this server serialises requests, so each one is atomic as
on S3. See docs/storage.md.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

BUCKET = "clul-test"
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Process:
    """:class:`S3Server` in a child process; ``stop()`` ends it."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen([sys.executable, __file__, str(self.port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if self._proc.poll() is not None:
                raise RuntimeError(self._proc.stderr.read().decode()[-500:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the S3 server did not listen within 60 s")

    def env(self) -> dict:
        return {**ENV, "AWS_ENDPOINT_URL": self.url}

    def require_auth(self, on: bool) -> None:
        require_auth(self.url, on)

    def stop(self) -> None:
        self._proc.kill()
        self._proc.wait(10)


class S3Server:
    """moto's S3 on ``127.0.0.1:port``, one request at a time; ``stop()`` ends it."""

    def __init__(self, port: int | None = None):
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class Quiet(MotoRequestHandler):
            def log_request(self, *a, **k):
                pass

        app, one = DomainDispatcherApplication(create_backend_app), threading.Lock()

        def serial(environ, start_response):
            with one:
                return list(app(environ, start_response))

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = make_server("127.0.0.1", self.port, serial, threaded=True,
                                   request_handler=Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def env(self) -> dict:
        return {**ENV, "AWS_ENDPOINT_URL": self.url}

    def require_auth(self, on: bool) -> None:
        require_auth(self.url, on)

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(10)


def require_auth(url: str, on: bool) -> None:
    """Make the server at ``url`` refuse every request whose key it does not know (moto's
    ``INITIAL_NO_AUTH_ACTION_COUNT``, set through its API) or accept any key again."""
    import urllib.request

    body = b"0" if on else b"inf"
    urllib.request.urlopen(urllib.request.Request(
        f"{url}/moto-api/reset-auth", data=body, method="POST",
        headers={"Content-Type": "application/octet-stream"}), timeout=10).read()


@contextmanager
def env_set(values: dict):
    """``os.environ`` updated with ``values`` within (restored after)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_bucket(name: str = BUCKET) -> None:
    import boto3

    boto3.client("s3").create_bucket(Bucket=name)


if __name__ == "__main__":
    S3Server(int(sys.argv[1]))
    threading.Event().wait()
