"""Starting ``flask --app example_app mcsync ...`` processes for the tests without paying
for Python's imports each time.

A new interpreter spends about a second of CPU importing Flask, SQLAlchemy, Alembic, RQ
and the shop before ``flask mcsync worker`` runs a line of ours, and the suite starts
well over a hundred workers and CLI commands: with this server the whole suite's CPU
time went from 510 s to 344 s on a 2-core machine. So each test process starts one
*fork server* (this file run as a script): a single-threaded interpreter that imports
all of that once, then forks a child per request. The child is a real, separate
process running the very code the command line runs (``flask.cli.main`` with the same
arguments, environment and working directory), in a session of its own, so tests kill
it with ``os.killpg`` as before. The only difference from ``subprocess.Popen`` is that
the modules were imported before the environment was set: nothing we import reads the
environment at import time (the app factory reads it when it runs, in the child).

The test process itself is not forked: it runs threads (the sandbox server, xdist's),
and forking a threaded process can copy a lock some other thread held.

Protocol: one JSON object per line on the server's stdin, one reply per line on its
stdout: ``{"op": "spawn", ...}`` -> ``{"pid": N}``; ``{"op": "poll", "pid": N}`` ->
``{"returncode": N or null}`` (the server reaps its children).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent


# --- the server (this file run as a script) -------------------------------------------


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become the command; never returns."""
    code = 1
    try:
        os.setsid()  # a session (and process group) of its own, as start_new_session=True
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        for fd, path in ((1, request.get("stdout")), (2, request.get("stderr"))):
            # Appended: stdout and stderr may share one file (a worker's log).
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            target = os.open(path, flags, 0o600) if path else null
            os.dup2(target, fd)
        # Like a new interpreter: the checkout first on sys.path ("python -m flask" puts
        # the working directory there).
        sys.path.insert(0, request["cwd"])
        sys.argv = ["flask", *request["args"]]
        from flask.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
    except BaseException:  # whatever happens, the child must not return into the server
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


# What every command imports, imported once by the server (its children inherit it).
WARM_MODULES = (
    "flask.cli",
    "rq.scheduler",
    "example_app",
    "example_app.commands",
    "flask_mcsync.cli",
    "flask_mcsync.worker",
    # The job functions and the services they call: imported here, once, not by each
    # worker child at its first job (its own cost, and a file being edited while the
    # suite runs could otherwise be read half-written by one child: seen once).
    "flask_mcsync.jobs",
    "psycopg",  # the PostgreSQL driver, when installed
)


def serve() -> None:
    for name in WARM_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)

    ended: dict[int, int] = {}
    reply = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                _child(request)
            answer: dict[str, Any] = {"pid": pid}
        elif request["op"] == "poll":
            pid = request["pid"]
            if pid not in ended:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 255 << 8
                if done:
                    ended[pid] = os.waitstatus_to_exitcode(status)
            answer = {"returncode": ended.get(pid)}
        else:
            answer = {"error": f"unknown op {request['op']!r}"}
        reply.write(json.dumps(answer) + "\n")
        reply.flush()


# --- the client (in the test process) ---------------------------------------------------


class ForkServer:
    """One fork server for this test process, started on first use."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"the tests' fork server exited ({self._proc.returncode}): its"
                    " traceback is in this test process's captured stderr"
                )
            if self._proc is None:
                self._proc = subprocess.Popen(
                    [sys.executable, __file__],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            stdin: IO[str] | None = self._proc.stdin
            stdout: IO[str] | None = self._proc.stdout
            assert stdin is not None and stdout is not None
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
            line = stdout.readline()
        if not line:
            raise RuntimeError("the tests' fork server died; see its output above")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def spawn(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path = ROOT,
        stdout: Path | None = None,
        stderr: Path | None = None,
    ) -> Spawned:
        """``flask *args`` in a new process; its output to the files given, else nowhere."""
        answer = self._ask(
            {
                "op": "spawn",
                "args": args,
                "env": env,
                "cwd": str(cwd),
                "stdout": None if stdout is None else str(stdout),
                "stderr": None if stderr is None else str(stderr),
            }
        )
        return Spawned(self, int(answer["pid"]))

    def returncode(self, pid: int) -> int | None:
        code = self._ask({"op": "poll", "pid": pid})["returncode"]
        return None if code is None else int(code)

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            self._proc.wait(timeout=10)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None


class Spawned:
    """A process the fork server started: the parts of ``Popen`` the tests use."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.returncode(self.pid)
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the process and whatever it forked (its session): a crash."""
        kill_session(self)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.02)
        return code


def kill_session(proc: Spawned | subprocess.Popen[Any]) -> None:
    """SIGKILL a process started in a session of its own, with all it forked, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


FORK_SERVER = ForkServer()


if __name__ == "__main__":
    serve()
