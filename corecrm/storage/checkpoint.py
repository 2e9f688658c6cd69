"""SQLite WAL checkpoints on a background thread, off the capture latency path.

In WAL mode SQLite copies the log back into the database file (a checkpoint,
with an fsync) inside whichever commit pushes the log past 1000 pages. On the
single-capture path that is one commit in every ~100: measured with plain
``sqlite3``, the p99 of capture-then-lead went from 0.4–0.6 ms to 11–16 ms
because of it. :class:`BackgroundCheckpointer` takes that work to its own
thread and connection: the hot write connection turns its automatic
checkpoints off, and each commit on it only pokes the checkpointer, which
runs a ``PASSIVE`` checkpoint (it never blocks readers or the writer) a moment
later, coalescing the commits in between.

The thread ends by itself after a few idle seconds and the next commit starts
it again, so a CRM instance that is dropped without ``close()`` leaves no
thread behind for long. Other connections keep SQLite's automatic
checkpoints, so the log stays bounded even if this thread falls behind.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("corecrm.storage")


class BackgroundCheckpointer:
    """Checkpoints one SQLite database's WAL on a daemon thread when poked."""

    #: Seconds without a commit after which the thread ends.
    idle_exit: float = 5.0

    def __init__(self, path: str, *, delay: float = 0.2) -> None:
        self.path = path
        self.delay = delay  #: wait this long after a poke, so a burst of commits costs one checkpoint
        self.checkpoints = 0  #: checkpoints run (tests and benchmarks read it)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending = False  #: a checkpoint is due: later pokes need not wake the thread

    def poke(self) -> None:
        """A commit went to the log: checkpoint soon. Cheap; called after every hot commit.

        Only the first commit after a checkpoint wakes the thread: waking it
        for every commit made the two threads trade the GIL on every capture.
        """
        if self._pending:
            thread = self._thread
            if thread is not None and thread.is_alive():
                return  # already due; (a thread that ended meanwhile is started again below)
        self._pending = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name="corecrm-wal-checkpoint", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop the thread (a checkpoint in progress finishes first)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def _run(self) -> None:
        try:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:  # the hot connection's own checkpoints are off: say so
            log.warning("background WAL checkpoints unavailable for %s: %s", self.path, exc)
            return
        try:
            while not self._stop.is_set():
                if not self._wake.wait(self.idle_exit):
                    return  # idle: the next commit starts a new thread
                if self._stop.wait(self.delay):
                    return
                self._wake.clear()
                self._pending = False  # commits from now on are after this checkpoint's start: poke again
                try:
                    con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # busy or locked by another process's checkpoint: next time
                    log.debug("background WAL checkpoint of %s skipped: %s", self.path, exc)
        finally:
            con.close()
