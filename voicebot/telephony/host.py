"""Speech models once per host: a model host process loads them, then forks the media workers.

The Korean Vosk model alone is ~520 MB resident and Piper + PocketSphinx add
~150 MB; loaded in every worker process, 40 workers would not fit in memory.
The model host is a spawned process that never imports pjsua2: it calls the
session factory's ``prepare()`` (loading the models) and then forks each media
worker from itself. A forked worker imports pjsua2 only after the fork, so no
pjsua2 thread is ever forked, and the model weights stay shared copy-on-write.

Measured on this box (Vosk ko + PocketSphinx en + Piper joe, each child having
recognised and synthesised): loaded in a process 719 MB RSS, 666 MB of it
private; in each forked child 40 MB private (PSS 176 MB with 4 children).

The manager talks to a forked worker through pipes it creates and hands to the
host (a ``Connection`` pickled over a ``Connection`` passes its file
descriptor). A third pipe, written only by the worker, closes when it exits:
that is the manager's sentinel. The host is the workers' parent, so it reaps
them and reports their exit codes.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection

from voicebot.errors import SipError
from voicebot.telephony.channel import PipeChannel
from voicebot.telephony.worker import WorkerProcess, WorkerSettings, run_worker


class ModelHost:
    """One process per pool that holds the speech models and forks workers. ``start()``, then ``worker()``."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_host_main, args=(settings, child), name="model-host", daemon=True)
        self._child_end = child
        self._send_lock = threading.Lock()
        self._replies: dict[int, int | str] = {}  # fork token -> pid, or the error
        self._exit_codes: dict[int, int] = {}  # pid -> exit code, once the host reaped it
        self._changed = threading.Condition()
        self._tokens = itertools.count(1)
        self._reader: threading.Thread | None = None
        self.load_seconds: float | None = None

    def start(self, timeout_s: float = 120.0) -> ModelHost:
        self.process.start()
        self._child_end.close()
        if not self._conn.poll(timeout_s):
            self.close()
            raise SipError(f"the model host did not load its models within {timeout_s} s", code="sip-model-host")
        try:
            kind, detail = self._conn.recv()
        except EOFError:
            kind, detail = "failed", f"exited with code {self.process.exitcode}"
        if kind != "ready":
            self.close()
            raise SipError(f"the model host failed: {detail}", code="sip-model-host")
        self.load_seconds = detail
        self._reader = threading.Thread(target=self._read, name="model-host-reader", daemon=True)
        self._reader.start()
        return self

    def worker(self) -> ForkedWorker:
        return ForkedWorker(self)

    def fork(self, commands: Connection, events: Connection, life: Connection, timeout_s: float = 30.0) -> int:
        """Have the host fork a worker on these pipe ends; its pid."""
        token = next(self._tokens)
        with self._send_lock:
            try:
                self._conn.send(("fork", token, commands, events, life))
            except (BrokenPipeError, OSError) as e:
                raise SipError(f"the model host is gone: {e}", code="sip-model-host") from None
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while token not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or not self.process.is_alive():
                    raise SipError("the model host did not fork a worker", code="sip-model-host")
                self._changed.wait(min(left, 0.2))
            reply = self._replies.pop(token)
        if isinstance(reply, str):
            raise SipError(f"the model host could not fork a worker: {reply}", code="sip-model-host")
        return reply

    def exit_code(self, pid: int, timeout_s: float = 0.0) -> int | None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while pid not in self._exit_codes and time.monotonic() < deadline and self.process.is_alive():
                self._changed.wait(max(0.0, min(deadline - time.monotonic(), 0.1)))
            return self._exit_codes.get(pid)

    def close(self, timeout_s: float = 10.0) -> int | None:
        """Stop the host (after the pool has stopped the workers it forked)."""
        with self._send_lock:
            try:
                self._conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout_s)
        if self._reader is not None:
            self._reader.join(2.0)
        self._conn.close()
        return self.process.exitcode

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            with self._changed:
                if message[0] == "forked":
                    self._replies[message[1]] = message[2]
                elif message[0] == "exited":
                    self._exit_codes[message[1]] = message[2]
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()


class _ForkedProcess:
    """The ``multiprocessing.Process`` interface for a worker the host forked (the host is its parent)."""

    def __init__(self, host: ModelHost, life: Connection) -> None:
        self._host = host
        self._life = life
        self.pid: int | None = None

    @property
    def sentinel(self) -> int:
        return self._life.fileno()

    def is_alive(self) -> bool:
        return self.pid is not None and not self._life.poll(0)  # readable only once the worker's end closed

    @property
    def exitcode(self) -> int | None:
        return None if self.pid is None else self._host.exit_code(self.pid)

    def kill(self) -> None:
        if self.is_alive():
            try:
                os.kill(self.pid, signal.SIGKILL)  # not reaped yet (its pipe is open), so the pid is still its own
            except ProcessLookupError:
                pass

    def join(self, timeout: float | None = None) -> None:
        if self.pid is None:
            return
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        multiprocessing.connection.wait([self._life], timeout)
        self._host.exit_code(self.pid, max(0.0, deadline - time.monotonic()))


class ForkedWorker(WorkerProcess):
    """A media worker forked from the model host: same interface as ``WorkerProcess``."""

    def __init__(self, host: ModelHost) -> None:
        self._host = host
        super().__init__(host.settings)

    def _make_process(self, ctx):  # noqa: ANN001, ANN202
        self._life_in, self._life_out = ctx.Pipe(duplex=False)
        return _ForkedProcess(self._host, self._life_in)

    def launch(self) -> None:
        commands_in, events_out = self._child_ends
        try:
            self.process.pid = self._host.fork(commands_in, events_out, self._life_out)
        finally:
            for end in (commands_in, events_out, self._life_out):
                end.close()


# --- inside the model host process --------------------------------------------------------------


def _host_main(settings: WorkerSettings, conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the manager's to handle
    started = time.monotonic()
    try:
        prepare = getattr(settings.session_factory, "prepare", None)
        if prepare is not None:
            prepare()  # the models: loaded once, shared by every worker forked below
    except Exception as e:  # noqa: BLE001 - reported to the manager
        traceback.print_exc()
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", round(time.monotonic() - started, 3)))
    # Single-threaded on purpose: forking a process with other threads running is unsafe. os.fork,
    # not multiprocessing: this daemonic process may not have multiprocessing children.
    children: dict[int, int] = {}  # pidfd (readable once the child exits) -> pid
    while True:
        ready = multiprocessing.connection.wait([conn, *children])
        for pidfd in [r for r in ready if r is not conn]:
            pid = children.pop(pidfd)
            os.close(pidfd)
            _, status = os.waitpid(pid, 0)
            _send(conn, ("exited", pid, os.waitstatus_to_exitcode(status)))
        if conn not in ready:
            continue
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break  # the manager is gone; its workers see their pipes close and stop
        if message[0] == "stop":
            break
        _, token, commands, events, life = message
        try:
            pid = os.fork()
            if pid == 0:
                _forked_main(settings, conn, commands, events, life)  # never returns
            children[os.pidfd_open(pid)] = pid
            _send(conn, ("forked", token, pid))
        except Exception as e:  # noqa: BLE001 - reported to the manager
            _send(conn, ("forked", token, f"{type(e).__name__}: {e}"))
        finally:
            for end in (commands, events, life):
                end.close()  # the child has its own copies; the next child must not inherit these
    for pidfd in children:
        multiprocessing.connection.wait([pidfd], 10.0)
        os.close(pidfd)


def _forked_main(settings: WorkerSettings, host_conn: Connection, commands: Connection, events: Connection, life: Connection) -> None:
    code = 1
    try:
        host_conn.close()  # so the manager sees EOF when the host itself goes
        # ``life`` is only held open: it closes when this process exits, whatever the cause
        run_worker(settings, PipeChannel(commands), PipeChannel(events))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - a worker's death is reported by its exit code
        traceback.print_exc()
    finally:
        os._exit(code)  # never run the host's cleanup (atexit, finalizers) in the child


def _send(conn: Connection, message: tuple) -> None:
    try:
        conn.send(message)
    except (BrokenPipeError, OSError):
        pass
