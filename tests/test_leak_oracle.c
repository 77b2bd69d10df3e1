/* SPDX-License-Identifier: MIT */
/* The proof's behavioural oracle (issue 6): random programs of coroutines, a plain thread,
 * tracked channels (some carrying references), selects, mutexes, contexts and timers run until
 * they settle; the proof gives its verdicts; then everything that is still live is made to use
 * every reference it holds (each actor, once woken, closes every channel it holds, unlocks, and
 * cancels its context; the plain thread and the timers do the same). The oracle fails if a
 * coroutine proven leaked ever wakes (a false verdict), or if, once the program has settled
 * again, a coroutine that is still blocked — so it can never wake: everything that could have
 * woken it has acted and gone — was not proven leaked (a missed one).
 *
 * TT_ORACLE_SEEDS=N (and TT_ORACLE_FIRST=S) runs N seeds from S in one test: the soak target
 * (`make soak`) runs thousands. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

enum { MAXC = 10, MAXA = 14, MAXOPS = 4, MAXH = 16, MAXM = 3, MAXX = 2, MAXT = 2 };

enum { OP_SEND, OP_RECV, OP_SELECT, OP_SEND_REF, OP_RECV_REF, OP_LOCK, OP_NIL, OP_SLEEP };

typedef struct op {
  int kind;
  int a, b; /* channel indexes, or a mutex index */
} op;

typedef struct actor {
  int idx;
  struct world *w;
  tt_chan *held[MAXH]; /* the references it holds (by handle; NULL: given away) */
  int nheld;
  op ops[MAXOPS];
  int nops;
  int hold_mu;  /* a mutex it takes first, -1: none */
  bool forget;  /* exits holding hold_mu */
  bool spawned; /* by the plain thread */
  _Atomic int progress;
  _Atomic int done;
  _Atomic tt_id id;
} actor;

typedef struct world {
  uint64_t rng;
  int nc, na, nm, nx;
  tt_chan *ch[MAXC];
  bool via[MAXC]; /* carries channel handles with references (tt_chan_send_ref) */
  int cap[MAXC];
  actor a[MAXA];
  tt_ctx *ctx[MAXX];
  int actor_ctx[MAXA]; /* -1: background */
  int thread_chans;    /* channels [nc - thread_chans, nc) belong to the plain thread */
  bool thread;
  _Atomic int thread_go, thread_done, thread_ready;
  int ntimers;
  _Atomic int timers_fired;
  int64_t timer_max;
  tt_mutex mu[MAXM];
  char log[4096];
} world;

static uint64_t rnd(world *w) {
  uint64_t x = w->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return w->rng = x;
}
static int pick(world *w, int n) { return (int)(rnd(w) % (uint64_t)n); }

/* ---- Actors --------------------------------------------------------------------------------- */

static bool holds(const actor *a, tt_chan *c) {
  for (int i = 0; i < a->nheld; i++)
    if (a->held[i] == c)
      return true;
  return false;
}

static void drop_held(actor *a, tt_chan *c) {
  for (int i = 0; i < a->nheld; i++)
    if (a->held[i] == c) {
      a->held[i] = NULL;
      return;
    }
}

static void add_held(actor *a, tt_chan *c) {
  if (a->nheld < MAXH)
    a->held[a->nheld++] = c;
  else
    tt_chan_release(c);
}

/* Once woken for good (or done): use every way to wake others, then go. */
static void service(actor *a) {
  world *w = a->w;
  for (int i = 0; i < a->nheld; i++)
    if (a->held[i]) {
      tt_chan_close(a->held[i]);
      tt_chan_release(a->held[i]);
      a->held[i] = NULL;
    }
  if (a->hold_mu >= 0 && !a->forget)
    tt_mutex_unlock(&w->mu[a->hold_mu]);
  tt_ctx_cancel(tt_ctx_current()); /* TT_EINVAL for the background context */
  atomic_store(&a->done, 1);
}

static void actor_main(void *arg) {
  actor *a = arg;
  world *w = a->w;
  atomic_store(&a->id, tt_self());
  if (a->hold_mu >= 0 && tt_mutex_lock(&w->mu[a->hold_mu]) != 0)
    a->hold_mu = -1;
  for (int i = 0; i < a->nops; i++) {
    op *o = &a->ops[i];
    int v = i;
    bool ok;
    int r = 0;
    switch (o->kind) {
    case OP_SEND:
      r = tt_chan_send(w->ch[o->a], &v);
      break;
    case OP_RECV:
      r = tt_chan_recv(w->ch[o->a], &v, &ok);
      break;
    case OP_SELECT: {
      tt_select_case cs[2] = {TT_CASE_RECV(w->ch[o->a], &v), TT_CASE_SEND(w->ch[o->b], &v)};
      if (w->via[o->a] || w->via[o->b]) { /* selects stay on int channels */
        r = 0;
        break;
      }
      r = tt_select(cs, 2);
      break;
    }
    case OP_SEND_REF: {
      tt_chan *c = w->ch[o->b]; /* the thread's actors: resolved by then */
      if (holds(a, c) && tt_chan_send_ref(w->ch[o->a], c) == 0)
        drop_held(a, c);
      break;
    }
    case OP_RECV_REF: {
      tt_chan *got = NULL;
      if (tt_chan_recv(w->ch[o->a], &got, &ok) == 0 && ok && got)
        add_held(a, got);
      break;
    }
    case OP_LOCK:
      if (o->a != a->hold_mu && tt_mutex_lock(&w->mu[o->a]) == 0)
        tt_mutex_unlock(&w->mu[o->a]);
      break;
    case OP_NIL:
      r = tt_chan_recv(NULL, &v, &ok);
      break;
    case OP_SLEEP:
      tt_sleep((o->a + 1) * TT_MSEC);
      break;
    }
    atomic_fetch_add(&a->progress, 1);
    if (r == TT_ECANCELED || r == TT_ESHUTDOWN)
      break;
  }
  service(a);
}

/* ---- The plain thread and the timers -------------------------------------------------------- */

static void *thread_main(void *arg) {
  world *w = arg;
  /* Its own channels, shared with the actors it spawns; it keeps its references until told. */
  int first = w->nc - w->thread_chans;
  for (int i = first; i < w->nc; i++)
    w->ch[i] = tt_chan_make(w->via[i] ? sizeof(tt_chan *) : sizeof(int), (size_t)w->cap[i]);
  for (int k = 0; k < w->na; k++) {
    actor *a = &w->a[k];
    if (!a->spawned)
      continue;
    for (int j = 0; j < a->nheld; j++)
      a->held[j] = w->ch[(int)(uintptr_t)a->held[j] - 1];
    tt_id id;
    tt_go_opts o = {.share = a->held, .nshare = (size_t)a->nheld};
    if (tt_go_opt(actor_main, a, &o, &id) != 0)
      tt_test_fail(__FILE__, __LINE__, "thread spawn failed");
  }
  atomic_store(&w->thread_ready, 1);
  while (!atomic_load(&w->thread_go))
    usleep(500);
  for (int i = first; i < w->nc; i++) {
    tt_chan_close(w->ch[i]);
    tt_chan_release(w->ch[i]);
  }
  atomic_store(&w->thread_done, 1);
  return NULL;
}

static world *timer_world;

static void timer_close(void *arg) {
  tt_chan *c = arg;
  tt_chan_close(c);
  tt_chan_release(c);
  atomic_fetch_add(&timer_world->timers_fired, 1);
}

/* ---- Generating a program ------------------------------------------------------------------- */

static void generate(world *w, uint64_t seed) {
  memset(w, 0, sizeof *w);
  w->rng = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  for (int i = 0; i < 8; i++)
    rnd(w);
  w->nc = 3 + pick(w, MAXC - 2);
  w->na = 2 + pick(w, MAXA - 1);
  w->nm = 1 + pick(w, MAXM);
  w->nx = pick(w, MAXX + 1);
  w->thread = pick(w, 3) == 0;
  w->thread_chans = w->thread ? 1 + pick(w, 2) : 0;
  if (w->thread_chans >= w->nc)
    w->thread_chans = w->nc - 1;
  for (int i = 0; i < w->nc; i++) {
    w->via[i] = pick(w, 4) == 0;
    w->cap[i] = pick(w, 3);
  }
  w->ntimers = pick(w, MAXT + 1);
  int ctl = w->nc - w->thread_chans; /* the controller's channels: [0, ctl) */
  for (int k = 0; k < w->na; k++) {
    actor *a = &w->a[k];
    a->idx = k;
    a->w = w;
    a->spawned = w->thread && pick(w, 3) == 0;
    int lo = a->spawned ? ctl : 0, hi = a->spawned ? w->nc : ctl;
    int nh = 1 + pick(w, 3);
    for (int j = 0; j < nh && hi > lo; j++) {
      tt_chan *dummy = (tt_chan *)(uintptr_t)(lo + pick(w, hi - lo) + 1); /* index + 1 for now */
      bool dup = false;
      for (int x = 0; x < a->nheld; x++)
        dup |= a->held[x] == dummy;
      if (!dup)
        a->held[a->nheld++] = dummy;
    }
    a->hold_mu = pick(w, 4) == 0 ? pick(w, w->nm) : -1;
    a->forget = pick(w, 3) == 0;
    a->nops = 1 + pick(w, MAXOPS);
    w->actor_ctx[k] = w->nx && !a->spawned && pick(w, 2) ? pick(w, w->nx) : -1;
    for (int i = 0; i < a->nops; i++) {
      op *o = &a->ops[i];
      int h = (int)(uintptr_t)a->held[pick(w, a->nheld)] - 1;
      int h2 = (int)(uintptr_t)a->held[pick(w, a->nheld)] - 1;
      int r = pick(w, 20);
      if (r < 5)
        *o = (op){OP_SEND, h, 0};
      else if (r < 10)
        *o = (op){OP_RECV, h, 0};
      else if (r < 13)
        *o = (op){OP_SELECT, h, h2};
      else if (r < 15)
        *o = (op){w->via[h] ? OP_SEND_REF : OP_SEND, h, h2};
      else if (r < 17)
        *o = (op){w->via[h] ? OP_RECV_REF : OP_RECV, h, 0};
      else if (r < 18)
        *o = (op){OP_LOCK, pick(w, w->nm), 0};
      else if (r < 19)
        *o = (op){OP_SLEEP, pick(w, 3), 0};
      else
        *o = (op){pick(w, 4) == 0 ? OP_NIL : OP_RECV, h, 0};
      /* A channel of channels carries references only: sends go by tt_chan_send_ref (of an
       * int channel it holds: never a channel of channels inside one), receives take them. */
      if (w->via[h] && (o->kind == OP_SEND || o->kind == OP_SEND_REF))
        *o = w->via[h2] || h2 == h ? (op){OP_RECV_REF, h, 0} : (op){OP_SEND_REF, h, h2};
      else if (w->via[h] && o->kind == OP_RECV)
        o->kind = OP_RECV_REF;
      else if (!w->via[h] && (o->kind == OP_SEND_REF || o->kind == OP_RECV_REF))
        o->kind = OP_RECV;
    }
  }
}

/* Sums everyone's progress: settled when it stays put and nothing is runnable. */
static int64_t progress(world *w) {
  int64_t p = 0;
  for (int k = 0; k < w->na; k++)
    p += atomic_load(&w->a[k].progress) * 3 + atomic_load(&w->a[k].done);
  return p + atomic_load(&w->timers_fired) * 1000 + atomic_load(&w->thread_done) * 100000;
}

static void settle(world *w) {
  int64_t last = -1;
  int quiet = 0;
  int64_t give_up = tt_now() + 30 * TT_SEC;
  while (quiet < 8) {
    tt_sleep(TT_MSEC);
    tt_counts c;
    ASSERT_OK(tt_counts_get(&c));
    int64_t p = progress(w);
    if (p == last && c.by_state[TT_STATE_RUNNABLE] == 0 && c.by_state[TT_STATE_RUNNING] == 1 &&
        c.by_reason[TT_WAIT_SLEEP] <= 0)
      quiet++;
    else
      quiet = 0;
    last = p;
    ASSERT(tt_now() < give_up);
  }
}

static bool in_report(const tt_leak_report *r, tt_id id) {
  for (size_t i = 0; i < tt_leak_report_len(r); i++)
    if (tt_leak_report_get(r, i)->id == id)
      return true;
  return false;
}

static int oracle_main(void *arg) {
  world *w = arg;
  timer_world = w;
  int ctl = w->nc - w->thread_chans;
  for (int i = 0; i < ctl; i++)
    w->ch[i] = tt_chan_make(w->via[i] ? sizeof(tt_chan *) : sizeof(int), (size_t)w->cap[i]);
  for (int x = 0; x < w->nx; x++)
    ASSERT_OK(tt_ctx_with_cancel(tt_ctx_background(), &w->ctx[x]));
  for (int i = 0; i < w->nm; i++)
    tt_mutex_init(&w->mu[i]);
  /* Resolve the held indexes of the controller's actors, and spawn them. */
  for (int k = 0; k < w->na; k++) {
    actor *a = &w->a[k];
    if (a->spawned)
      continue;
    for (int j = 0; j < a->nheld; j++)
      a->held[j] = w->ch[(int)(uintptr_t)a->held[j] - 1];
    tt_go_opts o = {.share = a->held, .nshare = (size_t)a->nheld};
    if (w->actor_ctx[k] >= 0)
      o.ctx = w->ctx[w->actor_ctx[k]];
    ASSERT_OK(tt_go_opt(actor_main, a, &o, NULL));
  }
  /* The plain thread makes its channels, then the actors that share them. */
  pthread_t t;
  if (w->thread) {
    ASSERT_EQ(pthread_create(&t, NULL, thread_main, w), 0);
    while (!atomic_load(&w->thread_ready))
      tt_sleep(100 * TT_USEC);
  }
  /* Timers hold references to some of the controller's channels until they fire. */
  for (int i = 0; i < w->ntimers; i++) {
    tt_chan *c = w->ch[pick(w, ctl)];
    int64_t d = (int64_t)(20 + pick(w, 30)) * TT_MSEC;
    if (d > w->timer_max)
      w->timer_max = d;
    ASSERT_OK(tt_after_func_opt(NULL, d, timer_close, c, &c, 1));
  }
  /* The controller lets go of everything: from now on only the actors, the thread and the
   * timers hold anything. */
  for (int i = 0; i < ctl; i++)
    ASSERT_OK(tt_chan_release(w->ch[i]));
  for (int x = 0; x < w->nx; x++)
    tt_ctx_release(w->ctx[x]);

  settle(w);
  tt_leak_report *v;
  int n = tt_leak_check(&v);
  ASSERT_GE(n, 0);
  int before[MAXA];
  for (int k = 0; k < w->na; k++)
    before[k] = atomic_load(&w->a[k].progress) * 2 + atomic_load(&w->a[k].done);

  /* Phase 2: every live party acts. */
  atomic_store(&w->thread_go, 1);
  int64_t until = tt_now() + w->timer_max + 5 * TT_MSEC;
  while (tt_now() < until || (w->thread && !atomic_load(&w->thread_done)) ||
         atomic_load(&w->timers_fired) < w->ntimers)
    tt_sleep(TT_MSEC);
  settle(w);

  for (int k = 0; k < w->na; k++) {
    tt_id id = atomic_load(&w->a[k].id);
    int now = atomic_load(&w->a[k].progress) * 2 + atomic_load(&w->a[k].done);
    if (id && in_report(v, id) && now != before[k]) {
      tt_leak_report_write(v, 2);
      tt_test_fail(__FILE__, __LINE__,
                   "false verdict: actor %d (coroutine %llu) woke after being "
                   "proven leaked",
                   k, (unsigned long long)id);
    }
  }
  tt_leak_report *f;
  ASSERT_GE(tt_leak_check(&f), 0);
  for (int k = 0; k < w->na; k++) {
    tt_id id = atomic_load(&w->a[k].id);
    bool blocked = id && !atomic_load(&w->a[k].done);
    if (blocked && !in_report(f, id)) {
      tt_dump(2, TT_DUMP_TRACES);
      tt_test_fail(__FILE__, __LINE__,
                   "missed: actor %d (coroutine %llu) can never wake and was "
                   "not proven leaked",
                   k, (unsigned long long)id);
    }
    if (!blocked && id)
      ASSERT(!in_report(f, id));
  }
  int woke = 0;
  for (int k = 0; k < w->na; k++)
    woke += atomic_load(&w->a[k].done);
  printf("  proven leaked: %zu settled, %zu at the end; %d of %d actors finished\n",
         tt_leak_report_len(v), tt_leak_report_len(f), woke, w->na);
  tt_leak_report_free(v);
  tt_leak_report_free(f);
  if (w->thread)
    pthread_join(t, NULL);
  return 0;
}

static void run_seeds(uint64_t first, uint64_t n) {
  const char *s = getenv("TT_ORACLE_SEEDS");
  if (s) {
    n = strtoull(s, NULL, 10);
    const char *f = getenv("TT_ORACLE_FIRST");
    first = f ? strtoull(f, NULL, 10) : 1000;
  }
  world *w = malloc(sizeof *w);
  for (uint64_t seed = first; seed < first + n; seed++) {
    generate(w, seed);
    printf("seed %llu: %d channels, %d actors, %d mutexes, %d contexts, %s, %d timers\n",
           (unsigned long long)seed, w->nc, w->na, w->nm, w->nx,
           w->thread ? "a plain thread" : "no thread", w->ntimers);
    fflush(stdout);
    tt_run_opts o = {.procs = 2};
    ASSERT_OK(tt_test_run_unchecked(oracle_main, w, &o, "the programs leak on purpose"));
  }
  free(w);
}

TEST(leak_oracle_seeds_0) { run_seeds(0, 10); }
TEST(leak_oracle_seeds_1) { run_seeds(10, 10); }
TEST(leak_oracle_seeds_2) { run_seeds(20, 10); }
TEST(leak_oracle_seeds_3) { run_seeds(30, 10); }
