/* SPDX-License-Identifier: MIT */
/* What makes a dump happen besides the C API: SIGQUIT, crashes, and the creation stacks that
 * dumps print.
 *
 * SIGQUIT's handler only wakes a dump thread (a write to a pipe), which takes a snapshot and
 * prints every coroutine's traceback to stderr, then exits with status 2 as Go does, or goes on
 * with TT_SIGQUIT=dump. A crash (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, a failed assertion)
 * prints a Go-style header, the crashing coroutine's stack unwound from the signal's context and,
 * per TT_TRACEBACK, every other coroutine's. Both arm an alarm first: if the dump itself hangs
 * (a crash inside malloc leaves its lock held), SIGALRM ends the process with _exit(2).
 *
 * Handlers chain: a handler the program installed before ours for a crash signal runs first (a
 * fault is re-executed under it; abort's signal calls it), and only if it returns do we report.
 * A program that asks for SIGQUIT with tt_signal_notify gets it instead of the dump, as in Go. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "diag/snap_int.h"

#define DUMP_ALARM_S 10 /* seconds a crash or SIGQUIT dump may take before _exit(2) */

/* The calling thread's stack, [*lo, *hi) (empty when it cannot be had): for unwinding a plain
 * thread or a worker's own context. */
static void thread_stack(uintptr_t *lo, uintptr_t *hi) {
  pthread_attr_t at;
  void *p = NULL;
  size_t size = 0;
  if (pthread_getattr_np(pthread_self(), &at) == 0) {
    pthread_attr_getstack(&at, &p, &size);
    pthread_attr_destroy(&at);
  }
  *lo = (uintptr_t)p;
  *hi = (uintptr_t)p + size;
}

/* The calling coroutine's stack, or its thread's. */
void tt__own_stack(tt__coro *co, uintptr_t *lo, uintptr_t *hi) {
  if (co) {
    *lo = (uintptr_t)co->stack_lo;
    *hi = *lo + co->stack_size;
  } else {
    thread_stack(lo, hi);
  }
}

/* ---- Creation stacks ---------------------------------------------------------------------- */

void tt__ancestry_release(tt__ancestry *a) {
  while (a) {
    /* acq_rel: the last release sees every reader's accesses before freeing. */
    if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) != 1)
      return;
    tt__ancestry *up = a->up;
    free(a);
    a = up;
  }
}

/* A copy of a's first `levels` records (a chain deeper than the limit is cut by copying). */
static tt__ancestry *ancestry_prefix(tt__ancestry *a, int levels) {
  if (a == NULL || levels <= 0)
    return NULL;
  if ((int)a->depth <= levels) {
    /* relaxed: the caller's coroutine holds a reference meanwhile. */
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    return a;
  }
  tt__ancestry *c = malloc(sizeof *c + a->npcs * sizeof(uintptr_t));
  if (c == NULL)
    return NULL;
  memcpy(c, a, sizeof *c + a->npcs * sizeof(uintptr_t));
  atomic_init(&c->refs, 1);
  c->up = ancestry_prefix(a->up, levels - 1);
  c->depth = 1 + (c->up ? c->up->depth : 0);
  return c;
}

tt__ancestry *tt__ancestry_capture(void) {
  uintptr_t pcs[TT_STACK_KEEP], lo, hi;
  tt__coro *self = tt__self();
  tt__own_stack(self, &lo, &hi);
  int n = tt__unwind_here(lo, hi, pcs, TT_STACK_KEEP, 0);
  if (n < 0)
    n = 0;
  tt__ancestry *a = malloc(sizeof *a + (size_t)n * sizeof(uintptr_t));
  if (a == NULL)
    return NULL;
  atomic_init(&a->refs, 1);
  a->npcs = (uint32_t)n;
  memcpy(a->pcs, pcs, (size_t)n * sizeof(uintptr_t));
  a->goid = self ? self->id : 0;
  a->gparent = self ? self->parent : 0;
  a->gopc = self ? self->create_pc : NULL;
  a->up = self ? ancestry_prefix(self->ancestry, tt__rt.creationstack - 1) : NULL;
  a->depth = 1 + (a->up ? a->up->depth : 0);
  return a;
}

/* ---- Signal names ------------------------------------------------------------------------- */

static const char *sig_desc(int sig) {
  switch (sig) {
  case SIGSEGV:
    return "SIGSEGV: segmentation violation";
  case SIGBUS:
    return "SIGBUS: bus error";
  case SIGILL:
    return "SIGILL: illegal instruction";
  case SIGFPE:
    return "SIGFPE: floating-point exception";
  case SIGABRT:
    return "SIGABRT: abort";
  case SIGTRAP:
    return "SIGTRAP: trace trap";
  case SIGQUIT:
    return "SIGQUIT: quit";
  }
  return "signal";
}

/* Runs a handler installed before ours, if it is a function; says whether it was. */
static bool call_old(const struct sigaction *old, int sig, siginfo_t *si, void *uc) {
  if (old->sa_flags & SA_SIGINFO) {
    if (old->sa_sigaction == NULL)
      return false;
    old->sa_sigaction(sig, si, uc);
    return true;
  }
  if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN)
    return false;
  old->sa_handler(sig);
  return true;
}

static uintptr_t uc_pc(const void *uc) {
  tt__uregs r;
  tt__uregs_from_ucontext(&r, uc);
  return r.r[TT__UNW_PC];
}

static void on_alarm(int sig) {
  (void)sig;
  tt__write_str(2, "\ntether: the dump did not finish in time; exiting\n");
  _exit(2);
}

static void arm_alarm(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
  alarm(DUMP_ALARM_S);
}

/* ---- Dumping every coroutine -------------------------------------------------------------- */

/* Prints every coroutine but `skip` (a crashing one already printed) to fd, Go's debug=2. */
static void dump_all(int fd, tt_id skip, bool crash) {
  if (!tt_running())
    return;
  tt_snapshot *s;
  if (tt__snapshot_take(&s, crash) != 0) {
    tt__write_str(fd, "tether: cannot take a snapshot (out of memory); the coroutines:\n");
    tt__list_coroutines(fd);
    return;
  }
  tt__snap_sort(s); /* without memory for the order: in the walk's order */
  char buf[16384];
  tt__sink k;
  tt__sink_fd(&k, fd, buf, sizeof buf);
  bool first = true;
  for (size_t i = 0; i < s->n; i++) {
    if (tt__snap_at(s, i)->id == skip)
      continue;
    if (!first)
      tt__sink_str(&k, "\n");
    first = false;
    tt__write_trace_one(s, tt__snap_at(s, i), &k);
  }
  tt__sink_flush(&k);
  tt_snapshot_free(s);
}

/* The coroutines still alive at the end of a run's grace period (all but self), as tracebacks;
 * the registry's bare listing if no snapshot can be taken. */
void tt__report_leftovers(int fd, tt__coro *self) { dump_all(fd, self ? self->id : 0, false); }

/* ---- SIGQUIT ------------------------------------------------------------------------------ */

static struct sigaction old_quit;
static _Atomic int quit_installed;
static int quit_pipe[2] = {-1, -1};
static pthread_t dumper;
static _Atomic bool dumper_running;
static _Atomic uintptr_t quit_pc;
static _Atomic int quit_worker;

static void on_quit(int sig, siginfo_t *si, void *uc) {
  int saved = errno;
  if (atomic_load_explicit(&dumper_running, memory_order_acquire)) {
    tt__worker *w = tt__tls_worker;
    atomic_store_explicit(&quit_pc, uc_pc(uc), memory_order_relaxed);
    atomic_store_explicit(&quit_worker, w ? w->index : -1, memory_order_relaxed);
    char b = 'q';
    ssize_t r = write(quit_pipe[1], &b, 1);
    (void)r;
    call_old(&old_quit, sig, si, uc); /* a handler the program installed before ours runs too */
  } else if (!call_old(&old_quit, sig, si, uc) && old_quit.sa_handler == SIG_DFL) {
    /* No runtime to dump: what SIGQUIT did before us. */
    sigaction(SIGQUIT, &old_quit, NULL);
    raise(SIGQUIT);
  }
  errno = saved;
}

static void *dumper_main_body(void *unused) {
  (void)unused;
  char b;
  for (;;) {
    ssize_t r = read(quit_pipe[0], &b, 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0 || b == 's')
      return NULL;
    if (!tt__rt.sigquit_continue)
      arm_alarm();
    tt__write_str(2, "SIGQUIT: quit\nPC=");
    tt__write_hex(2, atomic_load_explicit(&quit_pc, memory_order_relaxed));
    tt__write_str(2, " m=");
    int w = atomic_load_explicit(&quit_worker, memory_order_relaxed);
    tt__write_str(2, w < 0 ? "-1" : "");
    if (w >= 0)
      tt__write_u64(2, (uint64_t)w);
    tt__write_str(2, " sigcode=0\n\n");
    dump_all(2, 0, false);
    if (!tt__rt.sigquit_continue)
      _exit(2);
  }
}

/* Counted as one of the runtime's own threads while it lives (the deadlock check's count). */
static void *dumper_main(void *arg) {
  atomic_fetch_add_explicit(&tt__threads_internal, 1, memory_order_release);
  void *r = dumper_main_body(arg);
  atomic_fetch_sub_explicit(&tt__threads_internal, 1, memory_order_release);
  return r;
}

int tt__dumper_start(void) {
  tt__capture_setup(); /* without it, running coroutines show "stack unavailable" */
  if (pipe2(quit_pipe, O_CLOEXEC) != 0)
    return TT_ENOMEM;
  /* The dump thread takes no signals: they are the workers' and the program's. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int r = pthread_create(&dumper, NULL, dumper_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != 0) {
    close(quit_pipe[0]);
    close(quit_pipe[1]);
    quit_pipe[0] = quit_pipe[1] = -1;
    return TT_ENOMEM;
  }
  atomic_store_explicit(&dumper_running, true, memory_order_release);
  if (!atomic_exchange_explicit(&quit_installed, 1, memory_order_relaxed)) {
    struct sigaction cur;
    sigaction(SIGQUIT, NULL, &cur);
    /* A program that ignores SIGQUIT keeps ignoring it (as Go leaves an ignored SIGQUIT). */
    if (cur.sa_handler != SIG_IGN) {
      struct sigaction sa;
      memset(&sa, 0, sizeof sa);
      sa.sa_sigaction = on_quit;
      sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
      sigemptyset(&sa.sa_mask);
      sigaction(SIGQUIT, &sa, &old_quit);
    }
  }
  return 0;
}

void tt__dumper_stop(void) {
  tt__debug_run_end(); /* the debug endpoint's dumps, like SIGQUIT's, end with the run */
  if (!atomic_exchange_explicit(&dumper_running, false, memory_order_acq_rel))
    return;
  char b = 's';
  ssize_t r = write(quit_pipe[1], &b, 1);
  (void)r;
  pthread_join(dumper, NULL);
  close(quit_pipe[0]);
  close(quit_pipe[1]);
  quit_pipe[0] = quit_pipe[1] = -1;
}

/* ---- Crashes ------------------------------------------------------------------------------ */

static const int crash_sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP};
#define NCRASH ((int)(sizeof crash_sigs / sizeof crash_sigs[0]))
static struct sigaction old_crash[NCRASH];
static _Atomic int crashing;
static _Atomic pid_t crash_tid; /* the thread writing the crash report */

static int crash_index(int sig) {
  for (int i = 0; i < NCRASH; i++)
    if (crash_sigs[i] == sig)
      return i;
  return -1;
}

/* Prints co's traceback (or, co NULL, the thread's as goroutine 0) as a dump prints it: from the
 * signal's context uc, or without a stack (the status says why) when uc is NULL. */
static void report_one(int fd, tt__coro *co, const void *uc, int status) {
  tt_snapshot s;
  memset(&s, 0, sizeof s);
  s.taken = tt_now();
  tt__snap_entry e;
  memset(&e, 0, sizeof e);
  tt__snap_extra x = {NULL, 0, NULL};
  e.state = TT_STATE_RUNNING;
  e.stack_status = (uint8_t)status;
  if (co) {
    e.id = co->id;
    e.parent = co->parent;
    e.create_pc = co->create_pc;
    x.ancestry = co->ancestry;
    e.extra = &x;
  }
  tt__stk_buf stk;
  if (uc) {
    uintptr_t pcs[1024], lo, hi;
    tt__uregs r;
    tt__uregs_from_ucontext(&r, uc);
    tt__own_stack(co, &lo, &hi);
    int n = tt__unwind(&r, lo, hi, pcs, 1024);
    tt__stk_keep(&stk.stk, pcs, n > 0 ? (size_t)n : 0);
    e.stack = &stk.stk;
  }
  char buf[8192];
  tt__sink k;
  tt__sink_fd(&k, fd, buf, sizeof buf);
  tt__write_trace_one(&s, &e, &k);
  tt__sink_flush(&k);
}

/* Every coroutine but skip (already printed), when TT_TRACEBACK says all. */
static void report_others(int fd, tt_id skip) {
  if (tt__rt.traceback < TT__TB_ALL)
    return;
  tt__write_str(fd, "\n");
  dump_all(fd, skip, true);
}

void tt__overflow_trace(int fd, tt__coro *co, const void *uc) {
  if (tt__rt.traceback == TT__TB_NONE)
    return;
  arm_alarm();
  report_one(fd, co, uc, uc ? TT_STACK_OK : TT__STACK_PAST_END);
  report_others(fd, co->id);
}

static void crash_report(int sig, const void *fault_addr, int code, const void *uc) {
  int fd = 2;
  tt__worker *w = tt__tls_worker;
  tt__coro *co = w ? w->cur : NULL;
  arm_alarm();
  tt__write_str(fd, sig_desc(sig));
  tt__write_str(fd, "\nPC=");
  tt__write_hex(fd, uc ? uc_pc(uc) : 0);
  tt__write_str(fd, " m=");
  if (w)
    tt__write_u64(fd, (uint64_t)w->index);
  else
    tt__write_str(fd, "-1");
  tt__write_str(fd, " sigcode=");
  tt__write_u64(fd, (uint64_t)(code < 0 ? 0 : code));
  if (sig == SIGSEGV || sig == SIGBUS) {
    tt__write_str(fd, " addr=");
    tt__write_hex(fd, (uint64_t)(uintptr_t)fault_addr);
  }
  tt__write_str(fd, "\n");
  if (tt__rt.traceback == TT__TB_NONE)
    return;
  tt__write_str(fd, "\n");
  report_one(fd, co, uc, TT_STACK_OK);
  report_others(fd, co ? co->id : 0);
}

/* The caller's own stack, from a context captured here. */
static __attribute__((noinline)) void report_here(int fd, tt__coro *co) {
  static __thread ucontext_t uc; /* no big frame on a possibly small stack */
  tt__coro *volatile vco = co;
  volatile int vfd = fd;
  if (getcontext(&uc) == 0)
    report_one(vfd, vco, &uc, TT_STACK_OK);
}

/* A fatal error or a failed assertion in the calling context: its stack and, per TT_TRACEBACK,
 * every other coroutine's. */
void tt__fatal_dump(int fd) {
  if (tt__rt.traceback == TT__TB_NONE)
    return;
  arm_alarm();
  tt__worker *w = tt__tls_worker;
  tt__coro *co = w ? w->cur : NULL;
  report_here(fd, co);
  report_others(fd, co ? co->id : 0);
}

static void on_crash(int sig, siginfo_t *si, void *uc) {
  int i = crash_index(sig);
  tt__worker *w = tt__tls_worker;
  tt__coro *co = w ? w->cur : NULL;
  /* A guard-page hit: the stack overflow report. */
  if ((sig == SIGSEGV || sig == SIGBUS) && co && co->stack_lo) {
    const char *addr = si->si_addr;
    if (addr < co->stack_lo && addr >= co->stack_lo - tt__rt.page)
      tt__stack_overflow(co, addr, uc);
  }
  /* Someone else's first: a handler installed before ours. A fault runs again under it; a
   * signal raised on purpose (abort, a trap) is handed to it, and if it returns we report. */
  const struct sigaction *old = &old_crash[i];
  if (!atomic_load_explicit(&crashing, memory_order_relaxed)) {
    bool fault = sig != SIGABRT && sig != SIGTRAP && si->si_code > 0;
    bool has_fn = (old->sa_flags & SA_SIGINFO)
                      ? old->sa_sigaction != NULL
                      : old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN;
    if (fault && has_fn) {
      sigaction(sig, old, NULL);
      return;
    }
    if (!fault)
      call_old(old, sig, si, uc);
  }
  pid_t me = (pid_t)syscall(SYS_gettid);
  if (atomic_exchange_explicit(&crashing, 1, memory_order_acq_rel)) {
    /* A crash inside the report (SA_NODEFER brings it here): give up on the report. A crash on
     * another thread meanwhile: the first report finishes and ends the process. */
    if (atomic_load_explicit(&crash_tid, memory_order_relaxed) == me) {
      tt__write_str(2, "\ntether: crashed again while reporting a crash\n");
      _exit(2);
    }
    for (;;)
      pause();
  }
  atomic_store_explicit(&crash_tid, me, memory_order_relaxed);
  crash_report(sig, si->si_addr, si->si_code, uc);
  if (tt__rt.traceback == TT__TB_CRASH) {
    /* A core dump: the default action of the same signal. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig);
    _exit(2);
  }
  _exit(2);
}

int tt__crash_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_crash;
  /* SA_NODEFER: a fault inside the report re-enters the handler, which then exits, rather than
   * the kernel killing the process with the signal blocked. */
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  for (int i = 0; i < NCRASH; i++) {
    /* Under ASan, run with ASAN_OPTIONS=handle_segv=0 (and handle_abort=0) to see our reports
     * rather than ASan's. */
    if (sigaction(crash_sigs[i], &sa, &old_crash[i]) != 0)
      return TT_EINVAL;
  }
  return 0;
}
