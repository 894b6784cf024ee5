"""A one-way pipe between the manager and a media worker, with the shape of a queue.

Pipes rather than ``multiprocessing.Queue``: a pipe end can be handed to a
process that is already running (the model host forks workers long after the
pool started it), and a closed far end shows as ``ChannelClosed``, so a worker
whose manager died stops instead of dialling on as an orphan.
"""

from __future__ import annotations

import queue
import threading
import time
from multiprocessing.connection import Connection


class ChannelClosed(queue.Empty):
    """The other end is gone (its process exited or closed it)."""


class PipeChannel:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()  # several worker threads emit events

    def __getstate__(self) -> dict:
        return {"conn": self.conn}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["conn"])

    def put(self, item: object) -> None:
        """Send; a far end that is gone drops the item (a Stop for a dead worker, an event for a dead manager)."""
        with self._lock:
            try:
                self.conn.send(item)
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass

    def get(self, timeout: float | None = None) -> object:
        """The next item; ``queue.Empty`` after ``timeout`` s, ``ChannelClosed`` once the far end is gone."""
        try:
            if self.conn.poll(timeout):
                return self.conn.recv()
        except (EOFError, OSError):
            time.sleep(min(timeout or 0.0, 0.05))  # no busy loop for a caller that keeps asking
            raise ChannelClosed() from None
        raise queue.Empty()

    def get_nowait(self) -> object:
        return self.get(0)

    def close(self) -> None:
        self.conn.close()
