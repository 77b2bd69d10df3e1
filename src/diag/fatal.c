/* SPDX-License-Identifier: MIT */
/* Fatal errors: stack overflow (guard-page faults caught on a per-worker alternate signal stack,
 * unguarded overflows caught at a switch), broken invariants, and the async-signal-safe writing
 * they use.
 *
 * Everything here may run in a signal handler or with the heap broken, so it writes with write(2)
 * from fixed buffers and never calls malloc or stdio. A handler that is not ours to take (a fault
 * outside any coroutine's guard page) restores the handler installed before ours and returns, so
 * the faulting instruction re-executes under it — the program's own crash handling, or the
 * default core dump, still happens. */
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define ALTSTACK_SIZE ((size_t)256 << 10) /* lazily committed: crash reports symbolize on it */

void tt__write_str(int fd, const char *s) {
  if (fd < 0 || s == NULL)
    return;
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t k = write(fd, s, n);
    if (k <= 0)
      return;
    s += k;
    n -= (size_t)k;
  }
}

void tt__write_u64(int fd, uint64_t v) {
  char buf[24];
  char *p = buf + sizeof buf;
  *--p = '\0';
  do
    *--p = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  tt__write_str(fd, p);
}

void tt__write_hex(int fd, uint64_t v) {
  char buf[24];
  char *p = buf + sizeof buf;
  *--p = '\0';
  do
    *--p = "0123456789abcdef"[v & 15];
  while ((v >>= 4) != 0);
  *--p = 'x';
  *--p = '0';
  tt__write_str(fd, p);
}

void tt__write_pc(int fd, const void *pc) {
  Dl_info di;
  /* The return address points after the call; look up the call itself. */
  const char *q = (const char *)pc - 1;
  if (pc != NULL && dladdr(q, &di) && di.dli_fname) {
    if (di.dli_sname) {
      tt__write_str(fd, di.dli_sname);
      tt__write_str(fd, "+");
      tt__write_hex(fd, (uint64_t)((const char *)pc - (const char *)di.dli_saddr));
      tt__write_str(fd, " (");
    }
    tt__write_str(fd, di.dli_fname);
    tt__write_str(fd, "+");
    tt__write_hex(fd, (uint64_t)((const char *)pc - (const char *)di.dli_fbase));
    if (di.dli_sname)
      tt__write_str(fd, ")");
    return;
  }
  tt__write_hex(fd, (uint64_t)(uintptr_t)pc);
}

void tt__write_coro(int fd, tt__coro *co, uint32_t st, bool held) {
  /* A suspended coroutine is held still (its scan bit) while its changing fields are read; the
   * caller's own coroutine is still too; any other running one shows only what never changes
   * while it lives (id, parent, creation site: written atomically at spawn). */
  bool self = co == tt__self();
  tt__write_str(fd, "goroutine ");
  tt__write_u64(fd, __atomic_load_n(&co->id, __ATOMIC_RELAXED));
  tt__write_str(fd, " [");
  if (held && st == TT__S_WAITING)
    tt__write_str(fd, tt_wait_reason_string(co->wait_reason));
  else
    tt__write_str(fd, held ? tt_state_string(tt__state_public(st)) : "running");
  tt__write_str(fd, "]:");
  if ((held || self) && co->name) {
    tt__write_str(fd, " name=\"");
    tt__write_str(fd, co->name);
    tt__write_str(fd, "\"");
  }
  tt__write_str(fd, "\ncreated by ");
  tt__write_pc(fd, __atomic_load_n(&co->create_pc, __ATOMIC_RELAXED));
  tt__write_str(fd, " in goroutine ");
  tt__write_u64(fd, __atomic_load_n(&co->parent, __ATOMIC_RELAXED));
  tt__write_str(fd, "\n\n");
}

static void list_one(tt__coro *co, uint32_t st, bool held, void *p) {
  tt__write_coro(*(int *)p, co, st, held);
}

void tt__list_coroutines(int fd) {
  if (tt__rt.chunks == NULL)
    return;
  tt__registry_walk_frozen(list_one, &fd);
}

/* The first fatal error prints; any other thread that fails meanwhile waits for it to exit, so
 * reports never interleave. */
static _Atomic int dying;

static void die_once(void) {
  if (atomic_exchange_explicit(&dying, 1, memory_order_acq_rel))
    for (;;)
      pause();
}

void tt__fatal(const char *msg) {
  die_once();
  tt__write_str(2, "fatal error: ");
  tt__write_str(2, msg);
  tt__write_str(2, "\n\n");
  tt__fatal_dump(2);
  _exit(2);
}

void tt__assert_fail(const char *expr, const char *file, int line) {
  die_once();
  tt__write_str(2, "fatal error: tether internal assertion failed: ");
  tt__write_str(2, expr);
  tt__write_str(2, " (");
  tt__write_str(2, file);
  tt__write_str(2, ":");
  tt__write_u64(2, (uint64_t)line);
  tt__write_str(2, ")\n\n");
  tt__fatal_dump(2);
  _exit(2);
}

void tt__stack_overflow(tt__coro *co, const void *fault, const void *uc) {
  die_once();
  int fd = 2;
  tt__write_str(fd, "runtime: coroutine ");
  tt__write_u64(fd, co->id);
  if (co->name) {
    tt__write_str(fd, " (\"");
    tt__write_str(fd, co->name);
    tt__write_str(fd, "\")");
  }
  tt__write_str(fd, " overflowed its ");
  tt__write_u64(fd, co->stack_size);
  tt__write_str(fd, co->stack_guarded ? "-byte stack: guard page hit at "
                                      : "-byte unguarded stack: found at a switch, at ");
  tt__write_hex(fd, (uint64_t)(uintptr_t)fault);
  tt__write_str(fd, "\nruntime: stack=[");
  tt__write_hex(fd, (uint64_t)(uintptr_t)co->stack_lo);
  tt__write_str(fd, ", ");
  tt__write_hex(fd, (uint64_t)(uintptr_t)(co->stack_lo + co->stack_size));
  tt__write_str(fd, ")\nfatal error: stack overflow\n\n");
  /* The coroutine's stack from the faulting context (a guard-page hit); found at a switch, its
   * stack is past its end and is not walked. */
  tt__overflow_trace(fd, co, uc);
  _exit(2);
}

/* ---- Signals --------------------------------------------------------------------------------- */

int tt__signals_install(void) {
  /* Installed once per process and left in place: later runs reuse it, and a handler installed
   * by the program after ours keeps working. The crash handlers are in trigger.c. */
  static _Atomic int installed;
  if (atomic_exchange_explicit(&installed, 1, memory_order_relaxed))
    return 0;
  return tt__crash_install();
}

int tt__altstack_setup(tt__worker *w) {
  size_t size = ALTSTACK_SIZE > (size_t)SIGSTKSZ ? ALTSTACK_SIZE : (size_t)SIGSTKSZ;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return TT_ENOMEM;
  stack_t ss = {.ss_sp = p, .ss_size = size, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) {
    munmap(p, size);
    return TT_ENOMEM;
  }
  w->altstack = p;
  w->altstack_size = size;
  return 0;
}

void tt__altstack_teardown(tt__worker *w) {
  if (w->altstack == NULL)
    return;
  stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
  sigaltstack(&ss, NULL);
  munmap(w->altstack, w->altstack_size);
  w->altstack = NULL;
}
