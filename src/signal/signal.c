/* SPDX-License-Identifier: MIT */
/* Signals delivered on channels (tt_signal_notify, Go's os/signal) and the internal signal hooks
 * that contexts build on.
 *
 * Design
 * ------
 * Three parties, as in Go's runtime/sigqueue.go:
 *   - the handler, installed with sigaction for each signal somebody wants, runs on whatever
 *     thread the kernel picks (a worker in the middle of a coroutine, a plain thread). It is
 *     async-signal-safe by construction: it adds one to the signal's counter in `pending`, bumps
 *     the `wake` word and wakes the dispatcher with a futex wake — two atomic read-modify-writes
 *     on static memory and one system call; no lock, no allocation, errno preserved;
 *   - the dispatcher, a plain thread started by the run's first registration, with every signal
 *     blocked, sleeps on the `wake` futex; woken, it takes each counter to zero and sends the
 *     signal's number that many times to every registered channel that wants it, with a
 *     non-blocking send (a full buffer drops the value for that channel: Go's rule), then calls
 *     the hooks that want it;
 *   - registrations (tt_signal_notify) and hooks (tt__signal_hook_add), kept in two lists under
 *     `lock`, with a count per signal of those who want it: the first one installs the handler
 *     and saves the disposition it replaces, the last one to go restores it.
 *
 * Counting rather than Go's pending bit: a burst of k deliveries before the dispatcher looks is
 * sent as k values while there is room (Go would send one). Nothing is lost between the handler
 * and the dispatcher: the handler increments the counter before it bumps `wake` (release), and
 * the dispatcher reads `wake` (acquire) before it scans the counters and sleeps only while `wake`
 * still holds the value it read, so a delivery it did not see changes the word and the futex wait
 * returns at once.
 *
 * The registration is a holder (DESIGN.md section 5, R2): it owns one reference to its channel
 * (a tt__holder of kind TT__HOLDER_SIGNAL, owned by the registration, for a tracked channel; a
 * count for an untracked or detached one), taken at the first notify and dropped by stop. That
 * reference is what entitles the dispatcher to send without an ownership check, and what keeps
 * the channel alive while the handler may still send to it. The dispatcher sends while holding
 * `lock`, so once tt_signal_stop has unlinked a registration under the lock nothing more is sent
 * on its channel and the reference may go.
 *
 * Hooks run with no lock held (a hook may cancel a context, whose reactions may register or
 * unregister signals). The dispatcher publishes the hook it runs in `running`, under the lock;
 * tt__signal_hook_del unlinks under the lock and then waits until `running` is no longer its
 * hook (on the dispatcher thread itself it does not wait: the running call is its caller's).
 *
 * Lock order: `lock`, then a channel's lock, then (leaf) its rlock. `lock` is never held across a
 * switch nor while a hook runs, and the channel sends made under it never block. It is on no hot
 * path: registering is rare, and the dispatcher takes it once per batch of a signal.
 *
 * Lifecycle: at the end of a run (tt__signal_shutdown, from the main coroutine once the grace
 * period is over and again from tt_run after the workers stopped) every registration is dropped,
 * every hook disabled (its owner frees it), every disposition restored, and the dispatcher joined:
 * a run leaves no thread, descriptor or handler behind. From the first of these calls on, the run
 * takes no new registration (TT_ENOTRUNNING), so the dispatcher cannot be restarted while it is
 * being joined, and the join needs no lock (a hook under way that registers something is refused
 * rather than deadlocked). The dispatcher is woken by a futex on static memory rather than a pipe
 * or an eventfd: a handler invocation still under way on another thread while the dispositions
 * are restored could otherwise write into a descriptor that was closed, or closed and reused.
 *
 * Rejected: signalfd (it needs the signals blocked in every thread, including the program's own
 * threads and those that start later, which a library cannot ensure); sending from the handler
 * (a channel's lock is not async-signal-safe); a dispatcher coroutine (it would take a worker
 * from the program and could not run once the workers stop). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "chan/chan_int.h"
#include "signal/signal_int.h"

#define NWORDS ((NSIG + 63) / 64)

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the signal handler needs lock-free atomics");

typedef struct sigbits {
  uint64_t w[NWORDS];
} sigbits;

static inline bool bits_has(const sigbits *b, int s) { return (b->w[s / 64] >> (s % 64)) & 1; }
static inline void bits_set(sigbits *b, int s) { b->w[s / 64] |= (uint64_t)1 << (s % 64); }
static inline void bits_clear(sigbits *b, int s) { b->w[s / 64] &= ~((uint64_t)1 << (s % 64)); }
static inline bool bits_empty(const sigbits *b) {
  for (int i = 0; i < NWORDS; i++)
    if (b->w[i])
      return false;
  return true;
}

/* A channel's registration: one per channel, whatever the number of notify calls. */
typedef struct reg {
  struct reg *next;
  tt__chan *c;
  tt_chan *handle;
  sigbits want;
  tt__holder holder; /* TT__HOLDER_SIGNAL: the reference to c (tracked channels) */
} reg;

struct tt__sighook {
  struct tt__sighook *next;
  sigbits want;
  void (*fn)(void *arg, int sig);
  void *arg;
  bool linked;    /* in `hooks` (false once deleted or disabled by shut-down) */
  uint64_t round; /* the dispatcher's last delivery round that called it */
};

/* Protects everything down to `running`'s writes. Held by the dispatcher while it sends; never
 * held while a hook runs or across a switch. */
static tt__lock lock;
static reg *regs;
static struct tt__sighook *hooks;
static uint32_t nwant[NSIG];          /* registrations and hooks that want each signal */
static struct sigaction oldact[NSIG]; /* the disposition to restore, while nwant > 0 */
static bool disp_started;             /* the dispatcher runs */
static pthread_t disp_thread;
static uint64_t shut_run;   /* the run whose shut-down began: it takes no more registrations */
static uint64_t hook_round; /* the dispatcher's delivery rounds */
static _Atomic(struct tt__sighook *) running; /* the hook the dispatcher is calling, or NULL */

/* Shared with the handler: no lock. */
static _Atomic uint32_t pending[NSIG]; /* deliveries not yet dispatched */
static _Atomic uint32_t wake;          /* futex word: bumped by every delivery and by shut-down */
static _Atomic uint32_t quit;          /* set by shut-down, before its bump of `wake` */
static _Atomic uint64_t handled[NSIG]; /* for tests: deliveries dispatched */

static __thread bool on_dispatcher;

/* ---- Which signals -------------------------------------------------------------------------- */

/* Whether sig may be notified (see include/tether/signal.h for the reasons). */
static bool notifiable(int sig) {
  if (sig <= 0 || sig >= NSIG)
    return false;
  switch (sig) {
  case SIGKILL:
  case SIGSTOP:
  case SIGSEGV:
  case SIGBUS:
  case SIGFPE:
  case SIGILL:
    return false;
  default:
    break;
  }
  /* Between the last standard signal and SIGRTMIN: the C library's own (thread cancellation,
   * setxid), which sigaction refuses. */
  return sig <= 31 || sig >= SIGRTMIN;
}

/* The set of sigs[0..n) (n == 0: every notifiable signal), or TT_EINVAL. */
static int parse(const int *sigs, size_t n, sigbits *out) {
  memset(out, 0, sizeof *out);
  if (sigs == NULL && n > 0)
    return TT_EINVAL;
  if (n == 0) {
    for (int s = 1; s < NSIG; s++)
      if (notifiable(s))
        bits_set(out, s);
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    if (!notifiable(sigs[i]))
      return TT_EINVAL;
    bits_set(out, sigs[i]);
  }
  return 0;
}

/* ---- The handler ---------------------------------------------------------------------------- */

static void on_signal(int sig, siginfo_t *si, void *uctx) {
  (void)si;
  (void)uctx;
  int saved = errno; /* the futex call may set it; the interrupted code must not see it change */
  if (sig > 0 && sig < NSIG)
    /* relaxed: published by the release on `wake` below. */
    atomic_fetch_add_explicit(&pending[sig], 1, memory_order_relaxed);
  /* release: the dispatcher that reads this value (acquire) sees the counter's increment. */
  atomic_fetch_add_explicit(&wake, 1, memory_order_release);
  tt__futex_wake(&wake, 1);
  errno = saved;
}

/* One more party wants sig: the first installs the handler. lock held. 0 or TT_EINVAL. */
static int want_one(int sig) {
  if (nwant[sig]++ > 0)
    return 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  /* SA_ONSTACK: on a worker, the handler runs on its alternate stack rather than on a coroutine's
   * stack, which may be small. SA_RESTART: system calls the signal interrupts carry on. */
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, &oldact[sig]) != 0) {
    nwant[sig]--;
    return TT_EINVAL;
  }
  return 0;
}

/* One party fewer wants sig: the last restores the disposition saved by the first. lock held. */
static void unwant_one(int sig) {
  TT_ASSERT(nwant[sig] > 0);
  if (--nwant[sig] == 0)
    sigaction(sig, &oldact[sig], NULL);
}

/* Adds the signals of add not yet in *have to *have, wanting each; all or nothing, unless
 * `every` (the caller asked for every signal, as Go's Notify with none: a signal whose handler
 * cannot be installed here, say one an emulator keeps for itself, is left out). lock held. */
static int want_bits(sigbits *have, const sigbits *add, bool every) {
  sigbits done = {{0}};
  for (int s = 1; s < NSIG; s++) {
    if (!bits_has(add, s) || bits_has(have, s))
      continue;
    int err = want_one(s);
    if (err != 0 && every)
      continue;
    if (err != 0) {
      for (int u = 1; u < s; u++)
        if (bits_has(&done, u)) {
          unwant_one(u);
          bits_clear(have, u);
        }
      return err;
    }
    bits_set(&done, s);
    bits_set(have, s);
  }
  return 0;
}

/* Takes the signals of del (all, for NULL) out of *have, unwanting each. lock held. */
static void unwant_bits(sigbits *have, const sigbits *del) {
  for (int s = 1; s < NSIG; s++)
    if (bits_has(have, s) && (del == NULL || bits_has(del, s))) {
      bits_clear(have, s);
      unwant_one(s);
    }
}

/* ---- The dispatcher ------------------------------------------------------------------------- */

/* Sends sig on c without waiting; false when c has no room (or is closed). The registration's
 * reference entitles the dispatcher to c: no ownership check. */
static bool send_nb(tt__chan *c, int sig) {
  tt__chan_wait *woken;
  int how = tt__chan_lock(c);
  int r = tt__chan_send_locked(c, &sig, NULL, NULL, &woken);
  tt__chan_unlock(c, how);
  if (woken)
    tt__wake_commit(woken->wt);
  return r == 1;
}

/* Delivers k arrivals of sig: k values to each channel that wants it (as many as fit), then one
 * call of each hook that wants it. */
static void dispatch(int sig, uint32_t k) {
  tt__lock_acquire(&lock);
  for (reg *r = regs; r; r = r->next)
    if (bits_has(&r->want, sig))
      for (uint32_t i = 0; i < k && send_nb(r->c, sig); i++)
        ;
  /* Each hook once, with the lock released around the call: the list may change meanwhile, so
   * each pass looks for the first hook not yet called in this round. */
  uint64_t round = ++hook_round;
  for (;;) {
    struct tt__sighook *h = hooks;
    while (h && (h->round == round || !bits_has(&h->want, sig)))
      h = h->next;
    if (h == NULL)
      break;
    h->round = round;
    /* relaxed: written and cleared under the lock, which orders it with the unlink a deleter
     * makes before it reads it. */
    atomic_store_explicit(&running, h, memory_order_relaxed);
    tt__lock_release(&lock);
    h->fn(h->arg, sig); /* h may be deleted, even freed by fn itself: not touched after this */
    tt__lock_acquire(&lock);
    /* release: fn's work happens before a deleter that sees running change returns. */
    atomic_store_explicit(&running, NULL, memory_order_release);
  }
  tt__lock_release(&lock);
  /* release: a test that sees the count sees the values sent. */
  atomic_fetch_add_explicit(&handled[sig], k, memory_order_release);
}

static void *dispatcher_main_body(void *unused) {
  (void)unused;
  on_dispatcher = true;
  for (;;) {
    /* acquire: pairs with the handler's release; the counters it incremented before this value
     * of `wake` are visible below. */
    uint32_t seen = atomic_load_explicit(&wake, memory_order_acquire);
    /* acquire: shut-down stores quit before its bump of `wake`. */
    if (atomic_load_explicit(&quit, memory_order_acquire))
      break;
    for (int s = 1; s < NSIG; s++) {
      if (atomic_load_explicit(&pending[s], memory_order_relaxed) == 0)
        continue;
      /* relaxed: the counter carries no data of its own; what it counts was ordered by `wake`. */
      uint32_t k = atomic_exchange_explicit(&pending[s], 0, memory_order_relaxed);
      if (k)
        dispatch(s, k);
    }
    /* Sleeps only if no delivery (nor shut-down) bumped `wake` since it was read. */
    tt__futex_wait(&wake, seen, TT_FOREVER);
  }
  return NULL;
}

/* Counted as one of the runtime's own threads while it lives (the deadlock check's count). */
static void *dispatcher_main(void *arg) {
  atomic_fetch_add_explicit(&tt__threads_internal, 1, memory_order_release);
  void *r = dispatcher_main_body(arg);
  atomic_fetch_sub_explicit(&tt__threads_internal, 1, memory_order_release);
  return r;
}

/* Whether registrations are taken: the runtime runs and its shut-down has not begun. Checked
 * under the lock, which shut-down takes to drop everything: a registration is either refused or
 * dropped by it. (run_id is read after tt_running's acquire of the state, which tt_run stores
 * after it sets run_id.) lock held. */
static bool accepting(void) { return tt_running() && shut_run != tt__rt.run_id; }

/* Starts the dispatcher if it is not running. lock held. 0 or TT_ENOMEM. */
static int dispatcher_start(void) {
  if (disp_started)
    return 0;
  if (tt__fault(TT__FAULT_THREAD))
    return TT_ENOMEM;
  /* relaxed: pthread_create orders it before the thread's first read. */
  atomic_store_explicit(&quit, 0, memory_order_relaxed);
  /* The dispatcher blocks every signal (it inherits the mask it starts with): deliveries go to
   * the other threads, and its futex wait is never cut short. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int r = pthread_create(&disp_thread, NULL, dispatcher_main, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != 0)
    return TT_ENOMEM;
  disp_started = true;
  return 0;
}

/* ---- Registrations -------------------------------------------------------------------------- */

static reg *reg_find(tt__chan *c) {
  for (reg *r = regs; r; r = r->next)
    if (r->c == c)
      return r;
  return NULL;
}

static void reg_unlink(reg *r) {
  for (reg **p = &regs; *p; p = &(*p)->next)
    if (*p == r) {
      *p = r->next;
      return;
    }
}

/* Takes the registration's reference to its channel (the caller holds one, so c is alive).
 * 0 or TT_ENOMEM. */
static int reg_retain(reg *r) {
  if (tt__chan_mode(r->handle) == TT_CHAN_TRACKED)
    return tt__ref_add(&r->holder, r->c, 1);
  /* relaxed: the caller's own reference keeps the count above zero meanwhile. */
  atomic_fetch_add_explicit(&r->c->nrefs, 1, memory_order_relaxed);
  return 0;
}

/* Drops the registration's reference (freeing the channel if it was the last) and frees r. No
 * lock of ours held: freeing a channel may cascade. */
static void reg_free(reg *r) {
  if (tt__chan_mode(r->handle) == TT_CHAN_TRACKED)
    tt__holder_drop_all(&r->holder);
  else
    tt_chan_release(r->handle);
  free(r);
}

static void reg_free_list(reg *r) {
  while (r) {
    reg *next = r->next;
    reg_free(r);
    r = next;
  }
}

/* Adds want to c's registration, making it (from *fresh, then set to NULL) if c has none; all or
 * nothing. lock held. */
static int reg_add_locked(tt__chan *c, tt_chan *handle, const sigbits *want, bool every,
                          reg **fresh) {
  reg *r = reg_find(c);
  if (r != NULL)
    return want_bits(&r->want, want, every);
  r = *fresh;
  *fresh = NULL;
  r->c = c;
  r->handle = handle;
  r->holder.kind = TT__HOLDER_SIGNAL;
  r->holder.owner = r;
  int err = reg_retain(r);
  if (err != 0) {
    free(r);
    return err;
  }
  if ((err = want_bits(&r->want, want, every)) != 0) {
    reg_free(r); /* not the channel's last reference: the caller holds one, so nothing cascades */
    return err;
  }
  r->next = regs;
  regs = r;
  return 0;
}

int tt_signal_notify(tt_chan *handle, const int *sigs, size_t n) {
  sigbits want;
  if (handle == NULL || parse(sigs, n, &want) != 0)
    return TT_EINVAL;
  if (!tt_running())
    return TT_ENOTRUNNING;
  tt__holder *self;
  int err;
  tt__chan *c = tt__chan_check(handle, "tt_signal_notify", &self, &err);
  if (c == NULL)
    return err;
  if (c->esize != sizeof(int))
    return TT_EINVAL;
  reg *fresh = tt__calloc(1, sizeof *fresh);
  if (fresh == NULL)
    return TT_ENOMEM;
  tt__lock_acquire(&lock);
  if (!accepting())
    err = TT_ENOTRUNNING;
  else if ((err = dispatcher_start()) == 0)
    err = reg_add_locked(c, handle, &want, n == 0, &fresh);
  tt__lock_release(&lock);
  free(fresh);
  return err;
}

int tt_signal_stop(tt_chan *handle) {
  if (handle == NULL)
    return TT_EINVAL;
  tt__holder *self;
  int err;
  tt__chan *c = tt__chan_check(handle, "tt_signal_stop", &self, &err);
  if (c == NULL)
    return err;
  tt__lock_acquire(&lock);
  reg *r = reg_find(c);
  if (r) {
    reg_unlink(r);
    unwant_bits(&r->want, NULL);
  }
  tt__lock_release(&lock);
  /* The dispatcher sends under the lock: it can no longer reach the channel through r. */
  if (r)
    reg_free(r);
  return 0;
}

/* Removes the signals of del from every registration, collecting the emptied ones; lock held. */
static reg *reset_locked(const sigbits *del) {
  reg *gone = NULL;
  for (reg **p = &regs; *p;) {
    reg *r = *p;
    unwant_bits(&r->want, del);
    if (bits_empty(&r->want)) {
      *p = r->next;
      r->next = gone;
      gone = r;
    } else {
      p = &r->next;
    }
  }
  return gone;
}

static int reset(const int *sigs, size_t n, bool ignore) {
  sigbits del;
  if (parse(sigs, n, &del) != 0)
    return TT_EINVAL;
  tt__lock_acquire(&lock);
  reg *gone = reset_locked(&del);
  if (ignore) {
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    for (int s = 1; s < NSIG; s++) {
      if (!bits_has(&del, s))
        continue;
      if (nwant[s] > 0)
        oldact[s] = ign; /* hooks still want it: ignored once the last of them goes */
      else
        sigaction(s, &ign, NULL);
    }
  }
  tt__lock_release(&lock);
  reg_free_list(gone);
  return 0;
}

int tt_signal_reset(const int *sigs, size_t n) { return reset(sigs, n, false); }
int tt_signal_ignore(const int *sigs, size_t n) { return reset(sigs, n, true); }

/* ---- Hooks ---------------------------------------------------------------------------------- */

int tt__signal_hook_add(const int *sigs, size_t n, void (*fn)(void *arg, int sig), void *arg,
                        struct tt__sighook **out) {
  sigbits want;
  if (out == NULL)
    return TT_EINVAL;
  *out = NULL;
  if (fn == NULL || parse(sigs, n, &want) != 0)
    return TT_EINVAL;
  if (!tt_running())
    return TT_ENOTRUNNING;
  struct tt__sighook *h = tt__calloc(1, sizeof *h);
  if (h == NULL)
    return TT_ENOMEM;
  h->fn = fn;
  h->arg = arg;
  int err;
  tt__lock_acquire(&lock);
  if (!accepting())
    err = TT_ENOTRUNNING;
  else if ((err = dispatcher_start()) == 0 && (err = want_bits(&h->want, &want, n == 0)) == 0) {
    h->linked = true;
    h->next = hooks;
    hooks = h;
  }
  tt__lock_release(&lock);
  if (err != 0) {
    free(h);
    return err;
  }
  *out = h;
  return 0;
}

void tt__signal_hook_del(struct tt__sighook *h) {
  if (h == NULL)
    return;
  tt__lock_acquire(&lock);
  if (h->linked) {
    for (struct tt__sighook **p = &hooks; *p; p = &(*p)->next)
      if (*p == h) {
        *p = h->next;
        break;
      }
    h->linked = false;
    unwant_bits(&h->want, NULL);
  }
  tt__lock_release(&lock);
  /* Unlinked: the dispatcher may still be inside h->fn, never enters it again. On the dispatcher
   * itself, a running h->fn is our caller. acquire: pairs with the dispatcher's release. */
  uint32_t spins = 0;
  while (!on_dispatcher && atomic_load_explicit(&running, memory_order_acquire) == h)
    tt__spin_step(&spins);
  free(h);
}

/* ---- Shut-down ------------------------------------------------------------------------------ */

void tt__signal_shutdown(void) {
  TT_ASSERT(!on_dispatcher);
  tt__lock_acquire(&lock);
  reg *gone = regs;
  regs = NULL;
  for (reg *r = gone; r; r = r->next)
    unwant_bits(&r->want, NULL);
  for (struct tt__sighook *h = hooks; h; h = h->next) {
    h->linked = false;
    unwant_bits(&h->want, NULL);
  }
  hooks = NULL;
  bool join = disp_started;
  pthread_t th = disp_thread;
  disp_started = false;
  shut_run = tt__rt.run_id; /* no registration starts the dispatcher again in this run */
  tt__lock_release(&lock);
  reg_free_list(gone);
  if (join) {
    /* release: the dispatcher that sees the bump sees quit. */
    atomic_store_explicit(&quit, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&wake, 1, memory_order_release);
    tt__futex_wake(&wake, 1);
    pthread_join(th, NULL); /* with no lock held: a hook under way may take ours */
    /* Deliveries the handler counted while the dispositions were being restored go with the
     * run. (A handler invocation still finishing on another thread may count one after this;
     * a later run's registration of that signal would then deliver it: harmless.) */
    for (int s = 1; s < NSIG; s++)
      atomic_store_explicit(&pending[s], 0, memory_order_relaxed);
  }
}

uint64_t tt__signal_handled(int sig) {
  if (sig <= 0 || sig >= NSIG)
    return 0;
  return atomic_load_explicit(&handled[sig], memory_order_acquire);
}

bool tt__signal_active(void) {
  tt__lock_acquire(&lock);
  bool any = regs != NULL || hooks != NULL;
  tt__lock_release(&lock);
  return any;
}
