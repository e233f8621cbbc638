"""One Lua interpreter in one thread: scripts, callbacks and the values that cross between Lua and Python.

Lua states are not thread-safe and Orthanc calls every Lua callback "in mutual exclusion" (Orthanc Book,
users/lua.rst), so the interpreter lives in a dedicated thread and the event loop hands it work through a queue.
A Lua function that needs the server (``RestApiGet``, ``SendToModality``...) runs a coroutine on the event loop
and, while it waits, keeps serving the queue: a request made by a script may itself call a Lua filter (an
upload asks ``ReceivedInstanceFilter``), and that nested call runs on the same thread instead of deadlocking,
as Orthanc's recursive Lua mutex allows.

A script cannot stop the server: errors are Lua errors reported with their chunk and line, and each top-level
call gets an instruction budget (``LuaMaxInstructions``) enforced by a count hook. Once the budget is spent the
hook fails on every instruction, so a ``pcall`` around the loop cannot swallow it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import queue
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import lupa.lua54 as lupa

log = logging.getLogger("isengard.lua")
T = TypeVar("T")

#: Set in the tasks of the requests Lua makes: they skip the HTTP filter (as in Orthanc, where RestApiGet() never
#: reaches IncomingHttpRequestFilter) and the instances they store have the origin "Lua".
in_lua_call: contextvars.ContextVar[bool] = contextvars.ContextVar("isengard_lua_call", default=False)

#: Memory the interpreter may allocate: a script cannot take the server's memory (string.rep('x', 1e12)).
MAX_MEMORY = 1 << 30
_WAKE = object()  # queued when an awaited coroutine finishes, to wake a waiting Lua thread
_STOP = object()

# Run once with the Python helpers as arguments. Removes what reaches the file system, other processes or C
# code (Orthanc keeps Lua's whole standard library; an HTTP-reachable interpreter should not), makes ``print``
# Orthanc's (arguments joined by ", ", one log line) and ``load`` text-only (bytecode can crash the VM).
_SANDBOX = b"""
local emit = ...
local sethook, gethook = debug.sethook, debug.gethook
local load, select, tostring, concat = load, select, tostring, table.concat
local cocreate, resume, pack, unpack = coroutine.create, coroutine.resume, table.pack, table.unpack
local os_safe = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime }
io, debug, package, require, dofile, loadfile, python = nil, nil, nil, nil, nil, nil, nil
os = os_safe
string.dump = nil
function print(...)
  local parts = {}
  for i = 1, select('#', ...) do parts[i] = tostring((select(i, ...))) end
  emit(concat(parts, ', '))
end
_G.load = function(chunk, name, mode, env) return load(chunk, name, 't', env) end
-- hooks are per coroutine: a new one inherits the budget's hook, so a loop inside it is cut off too
coroutine.create = function(f)
  local co = cocreate(f)
  sethook(co, gethook())
  return co
end
coroutine.wrap = function(f)
  local co = coroutine.create(f)
  return function(...)
    local results = pack(resume(co, ...))
    if not results[1] then error(results[2], 2) end
    return unpack(results, 2, results.n)
  end
end
local main = coroutine.running()
local function exhausted()
  sethook(main, exhausted, '', 1)  -- the caller's loop too, when the budget ran out in a coroutine
  sethook(exhausted, '', 1)
  error('the script exceeded its instruction budget (LuaMaxInstructions)', 2)
end
return sethook, exhausted
"""


class LuaStopped(Exception):
    """Work submitted once the server stopped the interpreter."""


def _deny_attributes(obj: Any, name: Any, is_setting: bool) -> Any:
    """Python objects handed to Lua are functions to call, never objects to explore (``f.__globals__``...)."""
    raise AttributeError("not accessible from Lua")


class LuaThread:
    """The interpreter and the thread that owns it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, max_instructions: int, callbacks: tuple[str, ...]) -> None:
        self.loop = loop
        self.max_instructions = max_instructions
        self.callbacks = callbacks
        #: Which ``callbacks`` the scripts define, read by the event loop without a trip to this thread (hooks
        #: run for every request and instance); updated after each top-level run.
        self.defined: frozenset[str] = frozenset()
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopped = False
        self._depth = 0  # runs in progress: more than one while a callback waits for the server
        self._output: list[str] | None = None  # collects print() while /tools/execute-script runs
        self._thread = threading.Thread(target=self._serve, name="isengard-lua", daemon=True)
        self.lua = lupa.LuaRuntime(
            encoding=None,
            register_eval=False,
            register_builtins=False,
            attribute_filter=_deny_attributes,
            unpack_returned_tuples=True,
            max_memory=MAX_MEMORY,
        )
        # Set from Python: once spent, the hook fails on every Lua instruction, a Lua-side reset included.
        self._sethook, self._exhausted = self.lua.execute(_SANDBOX, self._print)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._jobs.put(_STOP)
        self._thread.join(timeout=10)

    # -- running work in the Lua thread ---------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                break
            if job is not _WAKE:
                job()
        # Callers still waiting (an event delivered during shutdown) get an error rather than wait forever.
        self._stopped = True
        while not self._jobs.empty():
            job = self._jobs.get()
            if job is not _WAKE and job is not _STOP:
                job()

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn`` in the Lua thread; awaitable from the event loop."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            if not done.set_running_or_notify_cancel():
                return
            if self._stopped:
                done.set_exception(LuaStopped("the Lua interpreter has stopped"))
                return
            try:
                done.set_result(fn())
            except BaseException as e:
                done.set_exception(e)

        if self._stopped:
            job()
        else:
            self._jobs.put(job)
        return asyncio.wrap_future(done, loop=self.loop)

    def wait(self, coro: Coroutine[Any, Any, T]) -> T:
        """From the Lua thread: run ``coro`` on the event loop and serve other Lua work until it finishes."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        future.add_done_callback(lambda _: self._jobs.put(_WAKE))
        while not future.done():
            job = self._jobs.get()
            if job is _STOP:  # shutting down: let the outer loop see it once this call is over
                self._jobs.put(_STOP)
                break
            if job is not _WAKE:
                job()
        return future.result()

    # -- Lua values ------------------------------------------------------------------------------------------
    def _print(self, text: bytes) -> None:
        line = text.decode("utf-8", "replace")
        log.warning("Lua says: %s", line)
        if self._output is not None:
            self._output.append(line)

    def to_lua(self, value: Any) -> Any:
        """JSON-like Python values as Lua values: dicts and lists become tables (lists 1-based), str bytes."""
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, dict):
            table = self.lua.table()
            for key, item in value.items():
                table[self.to_lua(key)] = self.to_lua(item)
            return table
        if isinstance(value, list | tuple):
            table = self.lua.table()
            for i, item in enumerate(value, start=1):
                table[i] = self.to_lua(item)
            return table
        return value

    def define(self, name: str, fn: Callable[..., Any]) -> None:
        self.lua.globals()[name.encode()] = fn

    def function(self, name: str) -> Any:
        fn = self.lua.globals()[name.encode()]
        return fn if lupa.lua_type(fn) == "function" else None

    # -- calls (in the Lua thread) ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _budget(self) -> Iterator[None]:
        """A fresh instruction budget for one run, and for the run it interrupted when nested (a callback served
        while another waits for the server): a nested run that spends its budget fails alone."""
        self._sethook(self._exhausted, b"", self.max_instructions)
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            self.defined = frozenset(name for name in self.callbacks if self.function(name) is not None)
            if self._depth:
                self._sethook(self._exhausted, b"", self.max_instructions)

    def execute(self, source: bytes, chunk: str) -> None:
        """Run a script: its global functions become callbacks. ``chunk`` names it in error messages."""
        with self._budget():
            self.lua.execute(source, name=chunk)

    def capture(self, source: bytes) -> str:
        """Run a script and answer what it printed (POST /tools/execute-script)."""
        outer, self._output = self._output, []
        try:
            self.execute(source, "=line")
            return "".join(line + "\n" for line in self._output)
        finally:
            self._output = outer

    def call(self, name: str, *args: Any) -> tuple[bool, Any]:
        """Call the global function ``name``: (False, None) if the scripts do not define it."""
        fn = self.function(name)
        if fn is None:
            return False, None
        with self._budget():
            return True, fn(*(self.to_lua(arg) for arg in args))


def from_lua(value: Any) -> Any:
    """Lua values as JSON-like Python values: a table with keys 1..n (or none) is a list, others are dicts."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if lupa.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if not items:
        return []  # Orthanc's DumpJson({}) writes []
    if all(isinstance(key, int) for key in items) and sorted(items) == list(range(1, len(items) + 1)):
        return [from_lua(items[i]) for i in range(1, len(items) + 1)]
    return {str(from_lua(key)): from_lua(item) for key, item in items.items()}
