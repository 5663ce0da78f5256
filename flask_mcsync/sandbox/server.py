"""Building the sandbox Flask app and serving it on a real socket."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from types import TracebackType

from flask import Flask, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Response as BaseResponse

from .api import create_api_blueprint
from .batches import BatchWorker
from .client import SandboxClient
from .control import create_control_blueprint
from .errors import PROBLEM_CONTENT_TYPE, problem
from .events import WebhookDispatcher
from .faults import Faults
from .state import DEFAULT_API_KEY, SandboxState

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


class _QuietHandler(WSGIRequestHandler):
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
            request_handler=_QuietHandler,
        )
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
