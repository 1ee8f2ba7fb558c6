"""Connection limits uvicorn lacks: request-head and body timeouts, idle connections closed to
make room, the descriptor limit raised at start, and a bound on repeated log lines.

uvicorn's h11 protocol arms its keep-alive timer only after a response, and cancels it on the
first byte: a connection that never sends anything, or trickles its headers (slowloris), stays
open forever. 20,400 such connections exhausted 20,000 descriptors; accept() then failed in a
loop and asyncio logged each failure with a traceback (198 MB in a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

import h11
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("vox.limits")

# Descriptors kept back from --limit-concurrency for runners' pipes, spooled uploads, model
# files and logs.
RESERVED_FDS = 256
# How much of a log message's start names its kind for RepeatFilter.
KEY_CHARS = 48


class _Flow(FlowControl):
    """uvicorn's read pausing, telling the protocol when the app asks for more body."""

    def __init__(self, transport: asyncio.Transport, on_resume: Callable[[], None]) -> None:
        super().__init__(transport)
        self._on_resume = on_resume

    def resume_reading(self) -> None:
        super().resume_reading()
        self._on_resume()


class _Room:
    """One server's idle connections, oldest first, and those it closed that are not gone yet:
    making room costs O(1) per connection, not a scan of every open one."""

    def __init__(self) -> None:
        self.idle: OrderedDict[GuardedH11Protocol, None] = OrderedDict()
        self.dropping = 0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with head and body timeouts, and room made by closing idle ones.

    A connection is idle while it waits for a request's head: just opened, between keep-alive
    requests, or mid-way through a slow head. Each idle stretch may last ``header_timeout``
    seconds, however the bytes trickle in. While the app waits for more of a request's body,
    the client may pause ``body_timeout`` seconds between bytes. When a new connection brings
    the count to ``limit_concurrency``, the oldest idle connection is closed, so a flood of
    silent sockets cannot crowd out real clients; connections busy with a request are never
    closed for room.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    room = _Room()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._dropped = False

    @classmethod
    def configured(cls, header_timeout: float, body_timeout: float) -> type[GuardedH11Protocol]:
        """A subclass for one server: its timeouts, and its own room (uvicorn builds protocols
        from a class and its config)."""
        fields = {"header_timeout": header_timeout, "body_timeout": body_timeout, "room": _Room()}
        return type(cls.__name__, (cls,), fields)

    def waiting_for_head(self) -> bool:
        return (self.cycle is None or self.cycle.response_complete) and not (
            self.transport.is_closing()
        )

    def waiting_for_body(self) -> bool:
        cycle = self.cycle
        return (
            cycle is not None
            and cycle.more_body
            and not (cycle.response_complete or cycle.disconnected)
            and not self.flow.read_paused  # the app has not asked for more yet: not the client's
            and not self.transport.is_closing()
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's signature; uvicorn narrows it. A stream server always hands a Transport,
        # though uvloop's is not an isinstance of asyncio's class.
        transport = cast("asyncio.Transport", transport)
        super().connection_made(transport)
        self.flow = _Flow(transport, lambda: self._sync_body_timer(progressed=False))
        self._sync_head_timer()
        limit = self.limit_concurrency
        room = self.room
        # Connections this server closed stay in the set until asyncio reports them lost.
        while limit is not None and len(self.connections) - room.dropping >= limit:
            oldest = next((c for c in room.idle if c is not self), None)
            if oldest is None:
                return  # all busy: uvicorn answers this connection's requests with 503
            log.debug("closing an idle connection to make room (limit %d)", limit)
            oldest.drop()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._sync_head_timer()
        self._sync_body_timer(progressed=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._sync_head_timer()
        self._sync_body_timer(progressed=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self._dropped:
            self._dropped = False
            self.room.dropping -= 1
        super().connection_lost(exc)

    def drop(self) -> None:
        """Close the connection; h11 is told first, as uvicorn's keep-alive timeout does."""
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self.transport.is_closing():
            return
        self._dropped = True
        self.room.dropping += 1
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()

    def _sync_head_timer(self) -> None:
        # Armed once per idle stretch, never pushed back by incoming bytes.
        if not self.waiting_for_head() or self.transport.get_protocol() is not self:
            self._cancel_head_timer()  # a request is in progress, or the socket is a WebSocket now
        elif self._head_timer is None:
            self.room.idle[self] = None  # the newest idle one
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        self.room.idle.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.waiting_for_head():
            log.debug("closing a connection that sent no request head in %ss", self.header_timeout)
            self.drop()

    def _sync_body_timer(self, *, progressed: bool) -> None:
        # Pushed back by every byte: it bounds a pause, not the whole upload.
        if not self.waiting_for_body():
            self._cancel_body_timer()
        elif progressed or self._body_timer is None:
            self._cancel_body_timer()
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_timeout)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timeout(self) -> None:
        self._body_timer = None
        if self.waiting_for_body():
            # The app sees a disconnect; no answer can be sent while it may still write one.
            log.debug("closing a request whose body paused over %ss", self.body_timeout)
            self.drop()


def raise_nofile() -> int:
    """Raise the soft descriptor limit to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit cannot become the soft one for descriptors; 2**20 is Linux's
    # usual fs.nr_open ceiling.
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft if soft != resource.RLIM_INFINITY else target
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        return soft
    return target


def fit_concurrency(limit: int, nofile: int) -> int:
    """``limit`` lowered to what the descriptor limit can hold beside RESERVED_FDS (0: that)."""
    room = max(16, nofile - RESERVED_FDS)
    if limit <= 0:
        return room
    if limit > room:
        log.warning(
            "--limit-concurrency %d does not fit the open-file limit %d; using %d",
            limit,
            nofile,
            room,
        )
        return room
    return limit


class RepeatFilter(logging.Filter):
    """At most ``burst`` records per ``window`` seconds for each kind of warning or error.

    A flood repeats one message (accept() failures, refused Origins, 503s at the limit): the
    first few say what happens, then one line per window counts the ones left out, so the log
    grows by a bounded amount whatever the rate. Records below WARNING pass untouched.
    Measured: with descriptors exhausted under a flood, CPython 3.11's accept loop logs one
    failure and schedules one retry per backlog slot (2,048), and each retry that fires after
    the listener closed logs a traceback: 46,034 of them, 74 MB, in one test run before this.
    """

    def __init__(self, burst: int = 10, window: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        # (logger, template) -> [window start, records let through, records left out]
        self._seen: dict[tuple[str, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        # The template's start: asyncio puts a timer's repr (its due time) into each
        # "Exception in callback ..." message, so whole texts never repeat exactly.
        key = (record.name, str(record.msg)[:KEY_CHARS])
        now = time.monotonic()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window:
            left_out = int(state[2]) if state else 0
            if len(self._seen) > 1000:
                self._seen.clear()  # templates are few; this bounds a pathological caller
            self._seen[key] = [now, 1, 0]
            if left_out:
                record.msg = f"{record.msg} ({left_out} like it left out of the log)"
            return True
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        return False


def bound_repeats(burst: int = 10, window: float = 10.0) -> RepeatFilter:
    """Install a RepeatFilter on every root handler (asyncio and uvicorn log through them)."""
    repeat = RepeatFilter(burst, window)
    for handler in logging.getLogger().handlers:
        handler.addFilter(repeat)
    return repeat


__all__ = [
    "GuardedH11Protocol",
    "RepeatFilter",
    "bound_repeats",
    "fit_concurrency",
    "raise_nofile",
]
