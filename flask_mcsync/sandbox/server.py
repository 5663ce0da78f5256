"""Building the sandbox Flask app and serving it on a real socket."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Response as BaseResponse
from werkzeug.wsgi import LimitedStream

from .api import create_api_blueprint
from .batches import BatchWorker
from .client import SandboxClient
from .control import create_control_blueprint
from .errors import PROBLEM_CONTENT_TYPE, problem
from .events import WebhookDispatcher
from .faults import Faults
from .state import DEFAULT_API_KEY, SandboxState

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

EXTENSION_KEY = "mcsync_sandbox"


@dataclass
class Sandbox:
    """What one sandbox app owns; found in ``app.extensions["mcsync_sandbox"]``."""

    state: SandboxState
    faults: Faults
    worker: BatchWorker
    dispatcher: WebhookDispatcher


def create_sandbox_app() -> Flask:
    """A fresh emulated Mailchimp account (own state, own batch worker thread)."""
    app = Flask(__name__)
    state = SandboxState()
    faults = Faults()
    worker = BatchWorker(state, faults)
    dispatcher = WebhookDispatcher(state)
    app.extensions[EXTENSION_KEY] = Sandbox(state, faults, worker, dispatcher)
    app.register_blueprint(create_api_blueprint(state, faults))
    app.register_blueprint(create_control_blueprint(state, faults))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> BaseResponse:
        # Routing errors (e.g. a method Flask itself rejects) still look like Mailchimp's
        # under /3.0; the control API keeps Werkzeug's own responses.
        response = error.get_response()
        if request.path.startswith("/3.0") and error.code is not None:
            title = "Method Not Allowed" if error.code == 405 else str(error.name)
            response.set_data(json.dumps(problem(error.code, title, str(error.description))))
            response.content_type = PROBLEM_CONTENT_TYPE
        return response

    worker.start()
    dispatcher.start()
    return app


class _Handler(WSGIRequestHandler):
    """Keeps a client's connection open between requests, as an HTTP/1.1 server does.

    What is known of Mailchimp here, and what is not:

    * Mailchimp's API speaks HTTP/1.1, whose connections stay open after an answer
      unless a side says otherwise (RFC 9112, section 9.3); no Mailchimp page says it
      does otherwise. How long it keeps an idle one is not documented: no Mailchimp
      page, SDK or client library we searched (2026-11-27) states it. The sandbox closes
      one after ``timeout`` seconds.
    * A chunked request body is valid HTTP/1.1, and Mailchimp keeps the connection after
      it as after any other. The sandbox closes it (see below): a client sees one more
      connect, nothing else. Our gateway always sends a length.
    * A request the HTTP layer itself refuses (a request line or a header too long)
      gets its answer and a closed connection, as servers commonly do; what Mailchimp's
      front end answers then is not documented either.

    How: Werkzeug's development server answers every request with ``Connection: close``,
    and after each answer reads whatever else the client sent (the rest of a body the
    app did not read), which on a kept connection would swallow the next request. Here
    the app reads a body through a stream bounded by its length, drained after the
    answer, and Werkzeug's own drain finds nothing to read, so the next request starts
    where it should. A chunked body has no length to bound it: its connection is closed.
    """

    protocol_version = "HTTP/1.1"
    # Seconds idle before the server closes a kept connection (Mailchimp's own figure is
    # not published). 60 s is many load balancers' default, and above the 30 s after
    # which a worker retires a connection itself (gateway.KEPT_IDLE_SECONDS), so the
    # client, not the server, normally ends an idle connection.
    timeout = 60
    _body: LimitedStream | None = None

    def setup(self) -> None:
        super().setup()
        # Werkzeug writes a response's headers and body apart: on a kept connection,
        # Nagle's algorithm would hold the body until the client's delayed ACK (~40 ms).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket_file = self.rfile
        self.server.connections.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.connections.discard(self.connection)  # type: ignore[attr-defined]
        self.rfile = self._socket_file  # closed by finish(), not the empty stand-in
        super().finish()

    def handle_one_request(self) -> None:
        self.rfile = self._socket_file  # the request line is read from the socket
        self._body = None
        super().handle_one_request()
        if self._body is not None and not self.close_connection:
            try:
                self._body.exhaust()  # the part of the body the app did not read
            except (OSError, ValueError, HTTPException):
                # The client left before sending it all (Werkzeug's ClientDisconnected).
                self.close_connection = True

    def make_environ(self) -> WSGIEnvironment:
        environ = super().make_environ()
        length = environ.get("CONTENT_LENGTH") or "0"
        if environ.get("wsgi.input_terminated") or not length.isdigit():
            self.close_connection = True  # chunked, or a length we cannot trust
            return environ
        self._body = LimitedStream(self._socket_file, int(length))  # type: ignore[arg-type]
        environ["wsgi.input"] = self._body
        # What Werkzeug reads after its answer: nothing (the next request stays unread).
        self.rfile = io.BytesIO()
        return environ

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own answers (a request line or header too long, a bad request)
        # leave the rest of the request unread: this connection cannot serve another.
        self.close_connection = True
        super().send_error(code, message, explain)

    def send_header(self, keyword: str, value: str) -> None:
        blanket_close = keyword.lower() == "connection" and value.lower() == "close"
        if blanket_close and not self.close_connection:
            return  # kept open (see the class docstring)
        super().send_header(keyword, value)

    def log_error(self, format: str, *args: Any) -> None:
        # http.server says "Request timed out" when a kept connection sat idle past
        # ``timeout``: the normal end of a kept connection, not an error.
        if not format.startswith("Request timed out"):
            super().log_error(format, *args)

    # Benchmarks send 100k+ requests; one log line each would dominate the run.
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class SandboxServer:
    """Serves a sandbox app on a loopback port from a daemon thread.

    >>> with SandboxServer() as sandbox:
    ...     client = MailChimp(mc_api=sandbox.api_key); client.base_url = sandbox.api_url
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, app: Flask | None = None) -> None:
        self.host = host
        self.app = app if app is not None else create_sandbox_app()
        self._requested_port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._client: SandboxClient | None = None

    @property
    def sandbox(self) -> Sandbox:
        sandbox: Sandbox = self.app.extensions[EXTENSION_KEY]
        return sandbox

    def start(self) -> SandboxServer:
        if self._server is not None:
            return self
        self._server = make_server(
            self.host,
            self._requested_port,
            self.app,
            threaded=True,
            request_handler=_Handler,
        )
        # The connections kept open: closed by stop(), so no request reaches a stopped
        # sandbox through a client's pooled connection.
        self._server.connections = set()  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="sandbox-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            for connection in list(self._server.connections):  # type: ignore[attr-defined]
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.sandbox.faults.clear()  # wakes requests still sleeping on injected latency
        self.sandbox.worker.stop()
        self.sandbox.dispatcher.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox server is not running; call start() first")
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:5123`` (the control API is under it)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        """Marketing API base with the trailing slash mailchimp3's urljoin needs."""
        return f"{self.url}/3.0/"

    @property
    def api_key(self) -> str:
        return DEFAULT_API_KEY

    @property
    def client(self) -> SandboxClient:
        if self._client is None:
            self._client = SandboxClient(self.url)
        return self._client


def serve(host: str = "127.0.0.1", port: int = 8025) -> None:
    """Serve a sandbox in the foreground until interrupted (for ``flask mcsync sandbox``)."""
    server = SandboxServer(host, port).start()
    print(f"Mailchimp sandbox API: {server.api_url}", flush=True)
    print(f"API key:               {server.api_key}", flush=True)
    print(f"Control API:           {server.url}/_sandbox/", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
