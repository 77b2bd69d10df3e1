# SPDX-License-Identifier: MIT
"""tether's coroutines in gdb: `info coroutines` and `coroutine N bt`.

Load it with `source tools/gdb/tether.py`, or let gdb auto-load it: the build puts a copy beside
the shared library (libtether.so.X.Y.Z-gdb.py) and `make install` puts one under
share/gdb/auto-load/ (see docs/DIAGNOSTICS.md, "Coroutines in gdb").

Everything comes from the runtime's own data structures, read through gdb, so it works on a live
process and on a core file alike, on the static library and the shared one (the library's symbols
are hidden, but its DWARF describes them):

  tt__rt.chunks[0 .. tt__rt.nchunks)   the registry: chunks of CHUNK tt__coro descriptors
  tt__coro.status & 0xff               TT__S_FREE / RUNNABLE / RUNNING / WAITING
  tt__coro.id, name, wait_reason, blocked_since, create_pc, sp, w->index
  tt__rt.workers[0 .. tt__rt.procs).now   each worker's last clock reading
  wait_strings (src/util/error.c)      the wait reasons' names

A suspended coroutine's registers are where tt__switch pushed them, at tt__coro.sp (the layout is
tt__saved_regs in src/arch/switch.h). `coroutine N bt` unwinds from there with a frame unwinder
(gdb.unwinder): while the command runs, the unwinder claims the selected thread's innermost
frame and gives, as its caller's registers, the coroutine's saved ones, so gdb's own DWARF
unwinding takes over from the coroutine's innermost frame. No register is written, which is why
it works on a core file, where Go's `set $pc` trick cannot.

docs/HACKING.md ("The gdb script") lists the runtime fields this depends on.
"""

import struct
import time

import gdb
import gdb.unwinder

# src/coro/coro.c: descriptors per registry chunk (a #define, so not in the DWARF).
CHUNK = 1024

# tt__coro.status (src/internal.h, TT__S_*).
S_FREE, S_RUNNABLE, S_RUNNING, S_WAITING = 0, 1, 2, 3
S_STATE_MASK = 0xFF
STATE_NAMES = {S_RUNNABLE: "runnable", S_RUNNING: "running", S_WAITING: "waiting"}

# include/tether/diag.h, TT_WAIT_REASON_MAP: used only when the program's own table
# (wait_strings in src/util/error.c) cannot be read.
WAIT_REASONS = [
    "", "chan receive", "chan send", "chan receive (nil chan)", "chan send (nil chan)", "select",
    "select (no cases)", "sleep", "IO wait", "sync.Mutex.Lock", "sync.RWMutex.RLock",
    "sync.RWMutex.Lock", "sync.Cond.Wait", "sync.WaitGroup.Wait", "semacquire", "sync.Once.Do",
    "blocking call", "group wait", "context done",
]

# What tt__switch saves at tt__coro.sp (src/arch/switch.h, tt__saved_regs), per architecture:
# the size of the saved area, and (register, offset) pairs. The caller's pc is the saved return
# address; its stack pointer is sp + size (TT_SAVED_SP).
SAVED_X86_64 = (64, [("r15", 8), ("r14", 16), ("r13", 24), ("r12", 32), ("rbx", 40),
                     ("rbp", 48)], 56, "rip", "rsp")
# aarch64: x19..x28 at 64.., fp (x29) at 144, pc (x30) at 152. d8-d15 (at 0..) are halves of
# the vector registers v8-v15 and are left out: gdb shows them as not saved.
SAVED_AARCH64 = (176, [("x%d" % (19 + i), 64 + 8 * i) for i in range(10)] + [("x29", 144),
                                                                            ("x30", 152)],
                 152, "pc", "sp")


class TetherError(Exception):
    pass


def _arch_layout():
    name = gdb.selected_inferior().architecture().name()
    if "x86-64" in name:
        return SAVED_X86_64
    if "aarch64" in name:
        return SAVED_AARCH64
    raise TetherError("tether: unsupported architecture %s (x86_64 and aarch64 only)" % name)


def _runtime():
    """tt__rt, the runtime's one global (hidden in the shared library; its DWARF names it)."""
    sym = gdb.lookup_global_symbol("tt__rt")
    if sym is None:
        sym = gdb.lookup_static_symbol("tt__rt")
    if sym is None:
        try:
            return gdb.parse_and_eval("tt__rt")
        except gdb.error:
            raise TetherError("tether: no symbol tt__rt: is the program linked with tether, "
                              "and built with debug information (-g, e.g. RelWithDebInfo)?")
    return sym.value()


def _wait_reasons():
    for sym in gdb.lookup_static_symbols("wait_strings"):
        if sym.symtab is not None and sym.symtab.filename.endswith("error.c"):
            try:
                v = sym.value()
                n = v.type.range()[1] + 1
                return [v[i].string() for i in range(n)]
            except (gdb.error, gdb.MemoryError):
                break
    return WAIT_REASONS


def _int(v):
    return int(v)


class Coro:
    """What `info coroutines` shows of one descriptor, read once."""

    __slots__ = ("addr", "id", "state", "reason", "blocked_since", "name", "create_pc", "sp",
                 "worker", "fn")


def _field_offsets(t):
    return {f.name: f.bitpos // 8 for f in t.fields() if f.name}


def coroutines():
    """Every live descriptor of the registry, in registry order."""
    rt = _runtime()
    chunks = rt["chunks"]
    if _int(chunks) == 0:
        return []
    n = _int(rt["nchunks"])
    ctype = gdb.lookup_type("tt__coro").strip_typedefs()
    size = ctype.sizeof
    off = _field_offsets(ctype)
    inf = gdb.selected_inferior()
    ptr = gdb.lookup_type("tt__coro").pointer()
    out = []
    for i in range(n):
        base = _int(chunks[i])
        if base == 0:
            continue
        mem = bytes(inf.read_memory(base, size * CHUNK))
        for j in range(CHUNK):
            status = struct.unpack_from("<I", mem, j * size + off["status"])[0]
            st = status & S_STATE_MASK
            if st == S_FREE:
                continue
            co = gdb.Value(base + j * size).cast(ptr).dereference()
            c = Coro()
            c.addr = base + j * size
            c.state = st
            c.id = _int(co["id"])
            c.reason = _int(co["wait_reason"])
            c.blocked_since = _int(co["blocked_since"])
            c.create_pc = _int(co["create_pc"])
            c.sp = _int(co["sp"])
            c.fn = _int(co["fn"])
            c.name = None
            if _int(co["name"]) != 0:
                try:
                    c.name = co["name"].string()
                except (gdb.error, gdb.MemoryError, UnicodeDecodeError):
                    c.name = "?"
            c.worker = None
            if _int(co["w"]) != 0:
                try:
                    c.worker = _int(co["w"]["index"])
                except (gdb.error, gdb.MemoryError):
                    pass
            out.append(c)
    out.sort(key=lambda c: c.id)
    return out


def _is_core():
    try:
        conn = gdb.selected_inferior().connection
        return conn is not None and conn.type == "core"
    except AttributeError:
        return "core" in gdb.execute("info target", to_string=True).split("\n", 1)[0]


def _clock():
    """The clock that wait times are measured against, and what it is.

    Live: now (CLOCK_MONOTONIC, the runtime's clock, which gdb shares on the same machine). Core:
    the newest clock reading the runtime stored, the largest of the workers' coarse clocks
    (tt__worker.now) and of the coroutines' blocked_since (set from them), which is some time
    before the dump: wait times are then lower bounds.
    """
    if not _is_core():
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC), "now"
    rt = _runtime()
    best = 0
    try:
        ws = rt["workers"]
        if _int(ws) != 0:
            for i in range(_int(rt["procs"])):
                best = max(best, _int(ws[i]["now"]))
    except (gdb.error, gdb.MemoryError):
        pass
    return best, "the runtime's last clock reading"


def _duration(ns):
    if ns < 0:
        return "-"
    if ns < 1000000:
        return "%dus" % (ns // 1000)
    if ns < 1000000000:
        return "%dms" % (ns // 1000000)
    if ns < 60 * 1000000000:
        return "%.1fs" % (ns / 1e9)
    s = ns // 1000000000
    if s < 3600:
        return "%dm%02ds" % (s // 60, s % 60)
    return "%dh%02dm" % (s // 3600, (s % 3600) // 60)


def _function_at(pc):
    """'func file:line' for a code address (a return address: looked up at pc - 1)."""
    if pc == 0:
        return "?"
    look = pc - 1
    name = None
    try:
        block = gdb.block_for_pc(look)
        while block is not None and block.function is None:
            block = block.superblock
        if block is not None:
            name = block.function.print_name
    except RuntimeError:
        pass
    if name is None:
        try:
            s = gdb.execute("info symbol 0x%x" % look, to_string=True).strip()
            if not s.startswith("No symbol"):
                name = s.split(" in section ")[0].split(" + ")[0]
        except gdb.error:
            pass
    sal = gdb.find_pc_line(look)
    where = ""
    if sal.symtab is not None:
        where = " %s:%d" % (sal.symtab.filename, sal.line)
    return "%s%s" % (name or "0x%x" % pc, where)


def _function_name(pc):
    if pc == 0:
        return None
    try:
        block = gdb.block_for_pc(pc)
        while block is not None and block.function is None:
            block = block.superblock
        if block is not None:
            return block.function.print_name
    except RuntimeError:
        pass
    return None


def _find(n):
    for c in coroutines():
        if c.id == n:
            return c
    return None


def _thread_of_worker(index):
    """The gdb thread running worker `index` (matched by pthread_t), or None."""
    try:
        rt = _runtime()
        handle = _int(rt["workers"][index]["thread"])
        for t in gdb.selected_inferior().threads():
            h = t.handle()
            if h is not None and int.from_bytes(bytes(h), "little") == handle:
                return t
    except (gdb.error, gdb.MemoryError, RuntimeError, TypeError, ValueError):
        pass
    return None


def _running_message(c):
    if c.worker is None:
        return "coroutine %d is running (no saved context)" % c.id
    t = _thread_of_worker(c.worker)
    where = ("thread %d" % t.num) if t is not None else "its thread"
    return "coroutine %d is running on worker %d (see %s)" % (c.id, c.worker, where)


# ---- info coroutines ------------------------------------------------------------------------

class InfoCoroutines(gdb.Command):
    """List tether's coroutines: id, state, wait reason, wait time, name, creation site.

Usage: info coroutines

One line per live coroutine. A running coroutine shows the worker it runs on (its stack is
that worker's thread's: see `info threads`). Wait times are measured against now for a live
process, and for a core file against the runtime's last clock reading (the workers' coarse
clocks), so that they are lower bounds there. The creation site is where tt_go was called."""

    def __init__(self):
        super().__init__("info coroutines", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        try:
            cs = coroutines()
        except TetherError as e:
            raise gdb.GdbError(str(e))
        if not cs:
            print("No coroutines (the runtime is not running).")
            return
        reasons = _wait_reasons()
        now, what = _clock()
        rows = []
        for c in cs:
            state = STATE_NAMES.get(c.state, "state %d" % c.state)
            reason, waited = "-", "-"
            if c.state == S_RUNNING and c.worker is not None:
                state = "running(w%d)" % c.worker
            if c.state == S_WAITING:
                reason = reasons[c.reason] if c.reason < len(reasons) else "reason %d" % c.reason
                if c.blocked_since > 0 and now > 0:
                    waited = _duration(max(0, now - c.blocked_since))
            name = c.name if c.name else "-"
            site = _function_at(c.create_pc)
            rows.append(("%d" % c.id, state, reason, waited, name, site))
        heads = ("Id", "State", "Wait reason", "Waiting", "Name", "Created at")
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads[:5])]
        fmt = "%*s  %-*s  %-*s  %*s  %-*s  %s"

        def line(r):
            return (fmt % (widths[0], r[0], widths[1], r[1], widths[2], r[2], widths[3], r[3],
                           widths[4], r[4], r[5])).rstrip()

        print(line(heads))
        for r in rows:
            print(line(r))
        print("(%d coroutines; wait times against %s)" % (len(rows), what))


# ---- The unwinder ---------------------------------------------------------------------------

class FrameId:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class CoroutineUnwinder(gdb.unwinder.Unwinder):
    """While `target` is set, gives one frame of the selected thread (its innermost ordinary
    frame) the saved registers of a suspended coroutine as its caller's: the frames after it are
    the coroutine's."""

    def __init__(self):
        super().__init__("tether-coroutine")
        # (thread number, frame level, {register: value}, the saved sp, the pc register's name)
        self.target = None
        self.claimed = None  # the level of the frame it claimed, once it has

    def __call__(self, pending):
        t = self.target
        if t is None:
            return None
        level = pending.level()
        # The first ordinary frame at or after the level asked for (gdb's inline unwinder takes
        # inline frames before any Python unwinder is asked), and that one only.
        if self.claimed is None:
            if level < t[1]:
                return None
        elif level != self.claimed:
            return None
        thread = gdb.selected_thread()
        if thread is None or thread.num != t[0]:
            return None
        self.claimed = level
        pc = pending.read_register(t[4])
        # The frame's id uses the coroutine's saved stack pointer, the lowest address of its
        # stack, so that gdb's check that each caller is outer (above) its callee holds for the
        # coroutine's frames, wherever the thread's own stack lies.
        info = pending.create_unwind_info(FrameId(gdb.Value(t[3]).cast(pc.type), pc))
        for reg, value in t[2].items():
            info.add_saved_register(reg, gdb.Value(value).cast(pending.read_register(reg).type))
        return info


_unwinder = CoroutineUnwinder()
gdb.unwinder.register_unwinder(None, _unwinder, replace=True)


def _host_frame_level(thread):
    """The level of the thread's innermost ordinary frame (inline frames are unwound by gdb's
    inline unwinder before any Python one is asked, and signal frames by their own), or None."""
    f = gdb.newest_frame()
    while f is not None:
        if f.type() == gdb.NORMAL_FRAME:
            return f.level()
        f = f.older()
    return None


class _OnCoroutine:
    """Within the block, the frames after one frame of a thread are coroutine c's; the block's
    value is the coroutine's innermost frame. A thread whose innermost frame is an ordinary one
    is preferred, so that the coroutine's frames are numbered from 1; the selected thread and
    frame are restored at the end."""

    def __init__(self, c):
        size, regs, pc_off, pc_reg, sp_reg = _arch_layout()
        mem = bytes(gdb.selected_inferior().read_memory(c.sp, size))
        values = {reg: struct.unpack_from("<Q", mem, o)[0] for reg, o in regs}
        values[pc_reg] = struct.unpack_from("<Q", mem, pc_off)[0]
        values[sp_reg] = c.sp + size
        self.values = values
        self.sp = c.sp
        self.pc_reg = pc_reg

    def __enter__(self):
        self.old_thread = gdb.selected_thread()
        if self.old_thread is None:
            raise gdb.GdbError("tether: no thread selected (is the program running?)")
        try:
            self.old_frame = gdb.selected_frame()
        except gdb.error:
            self.old_frame = None
        best = None
        threads = [self.old_thread] + [t for t in gdb.selected_inferior().threads()
                                       if t.num != self.old_thread.num]
        for t in threads:
            if not t.is_valid():
                continue
            t.switch()
            level = _host_frame_level(t)
            if level is not None and (best is None or level < best[1]):
                best = (t, level)
                if level == 0:
                    break
        if best is None:
            self.old_thread.switch()
            raise gdb.GdbError("tether: no thread has an ordinary frame to unwind from")
        best[0].switch()
        _unwinder.target = (best[0].num, best[1], self.values, self.sp, self.pc_reg)
        _unwinder.claimed = None
        gdb.invalidate_cached_frames()
        f = gdb.newest_frame()
        while f is not None:
            older = f.older()
            if _unwinder.claimed is not None and f.level() == _unwinder.claimed:
                return older
            f = older
        raise gdb.GdbError("tether: could not unwind into the coroutine's saved context")

    def __exit__(self, *exc):
        _unwinder.target = None
        _unwinder.claimed = None
        gdb.invalidate_cached_frames()
        try:
            if self.old_thread.is_valid():
                self.old_thread.switch()
            gdb.newest_frame().select()
            if self.old_frame is not None and self.old_frame.is_valid():
                self.old_frame.select()
        except gdb.error:
            pass
        return False


def _frame_args(frame):
    try:
        block = frame.block()
    except RuntimeError:
        return None
    while block is not None and block.function is None:
        block = block.superblock
    if block is None:
        return None
    parts = []
    for sym in block:
        if not sym.is_argument:
            continue
        try:
            v = frame.read_var(sym)
            s = v.format_string(max_elements=8, repeat_threshold=8, summary=True)
        except (gdb.error, RuntimeError, ValueError):
            s = "<unavailable>"
        parts.append("%s=%s" % (sym.print_name, s))
    return ", ".join(parts)


def _frame_locals(frame):
    out = []
    try:
        block = frame.block()
    except RuntimeError:
        return out
    while block is not None:
        for sym in block:
            if sym.is_argument or not sym.is_variable:
                continue
            try:
                s = frame.read_var(sym, block).format_string(max_elements=8, summary=True)
            except (gdb.error, RuntimeError, ValueError):
                s = "<optimized out>"
            out.append("%s = %s" % (sym.print_name, s))
        if block.function is not None:
            break
        block = block.superblock
    return out


def print_backtrace(first, limit=None, full=False):
    """Frames from `first` outwards, numbered as gdb numbers them (so that `coroutine N frame K`
    selects the frame printed as #K)."""
    count = 0
    f = first
    while f is not None and (limit is None or count < limit):
        pc = f.pc()
        if pc == 0:
            break
        name = f.name() or "??"
        args = _frame_args(f)
        sal = f.find_sal()
        where = ""
        if sal.symtab is not None:
            where = " at %s:%d" % (sal.symtab.filename, sal.line)
        elif f.type() != gdb.INLINE_FRAME:
            try:
                lib = gdb.solib_name(pc)
            except RuntimeError:
                lib = None
            if lib:
                where = " from %s" % lib
        addr = "" if f.type() == gdb.INLINE_FRAME else "0x%016x in " % pc
        print("#%-2d %s%s (%s)%s" % (f.level(), addr, name, args if args is not None else "",
                                      where))
        if full:
            for l in _frame_locals(f):
                print("        %s" % l)
        count += 1
        try:
            f = f.older()
        except gdb.error as e:
            print("Backtrace stopped: %s" % e)
            return
    if f is not None and f.pc() != 0 and limit is not None:
        print("(More stack frames follow...)")


class CoroutineCommand(gdb.Command):
    """Run a command on a suspended coroutine's stack.

Usage: coroutine N bt [full] [COUNT]
       coroutine N COMMAND...

`coroutine N bt` prints the stack of coroutine N (its id, as `info coroutines` lists it),
unwound from the registers tt__switch saved when it was suspended, innermost frame first;
`full` adds each frame's locals, COUNT limits the frames. Any other COMMAND runs with the
coroutine's innermost frame selected and the coroutine's frames behind it: `coroutine 2 info
locals`, `coroutine 2 up 3`... While it runs, frame 0 is the thread's own and frames 1 on are
the coroutine's (so `frame 1` is its innermost). Nothing is written to the process: this works
on core files. A running coroutine has no saved context: its stack is its worker's thread's."""

    def __init__(self):
        super().__init__("coroutine", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        argv = gdb.string_to_argv(arg)
        if len(argv) < 2:
            raise gdb.GdbError("usage: coroutine N bt [full] [COUNT] | coroutine N COMMAND")
        try:
            n = int(argv[0], 0)
        except ValueError:
            raise gdb.GdbError("coroutine: '%s' is not a coroutine id" % argv[0])
        try:
            c = _find(n)
        except TetherError as e:
            raise gdb.GdbError(str(e))
        if c is None:
            raise gdb.GdbError("coroutine: no coroutine %d (see `info coroutines`)" % n)
        if c.state == S_RUNNING:
            print(_running_message(c))
            return
        if c.sp == 0:
            name = _function_name(c.fn) or "0x%x" % c.fn
            print("coroutine %d has not started yet: it will run %s" % (c.id, name))
            return
        cmd = argv[1:]
        if cmd[0] in ("bt", "backtrace", "where"):
            full, limit = False, None
            for a in cmd[1:]:
                if a in ("full", "-full"):
                    full = True
                else:
                    try:
                        limit = int(a)
                    except ValueError:
                        raise gdb.GdbError("coroutine: bt takes [full] [COUNT], not '%s'" % a)
            try:
                with _OnCoroutine(c) as first:
                    print_backtrace(first, limit, full)
            except TetherError as e:
                raise gdb.GdbError(str(e))
            return
        rest = arg.split(None, 1)[1]
        with _OnCoroutine(c) as first:
            first.select()
            gdb.execute(rest, from_tty)


InfoCoroutines()
CoroutineCommand()
