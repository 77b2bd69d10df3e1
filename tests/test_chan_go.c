/* SPDX-License-Identifier: MIT */
/* Go conformance: the programs of the Go distribution's test/chan directory, ported to tether.
 *
 * Each test ports the behaviour and the expected outputs of one Go program (named in the test:
 * chan_go_<program>), not its code. Where Go sleeps to let another goroutine block first, these
 * tests wait until the runtime reports that coroutine waiting (its wait reason); where a Go program
 * leaves goroutines blocked at exit, these tests tear them down (by closing channels, or a quit
 * channel every process selects on) and check that no coroutine and no channel is left over.
 * Where Go panics (send on or close of a closed channel, close(nil)), tether returns an error. */
#include <malloc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test.h"

/* ---- Helpers --------------------------------------------------------------------------------- */

/* A channel that must be made. */
static tt_chan *mk(size_t elem_size, size_t cap) {
  tt_chan *ch = tt_chan_make(elem_size, cap);
  ASSERT(ch != NULL);
  return ch;
}

static tt_chan *mk_untracked(size_t elem_size, size_t cap) {
  tt_chan *ch = NULL;
  ASSERT_OK(tt_chan_make_opt(&ch, elem_size, cap, &(tt_chan_opts){.mode = TT_CHAN_UNTRACKED}));
  return ch;
}

/* Spawns fn(arg), giving the child a reference to each of the n channels in share (the spawner
 * keeps its own); stack 0 means the default. */
static void go_stack(void (*fn)(void *), void *arg, tt_chan *const *share, size_t n, size_t stack) {
  tt_go_opts o = {.share = share, .nshare = n, .stack_size = stack};
  ASSERT_OK(tt_go_opt(fn, arg, &o, NULL));
}

#define CHANS_(...) ((tt_chan *[]){__VA_ARGS__})
#define NCHANS_(...) (sizeof CHANS_(__VA_ARGS__) / sizeof(tt_chan *))
/* GO(fn, arg, ch...): spawns fn(arg) sharing the listed channels with it. */
#define GO(fn, arg, ...) go_stack((fn), (arg), CHANS_(__VA_ARGS__), NCHANS_(__VA_ARGS__), 0)

/* Waits until coroutine 1 is the only one left and the number of live channels is back to live:
 * the coroutines a test started have finished and released their references as they exited.
 * (They signal completion just before exiting, so this polls for the last few instructions.) */
static void await_quiet(int64_t live) {
  int64_t give_up = tt_now() + (int64_t)(60 * tt_test_slow()) * TT_SEC;
  while (tt_num_coroutines() > 1 || tt__chan_count_live() != live) {
    if (tt_now() > give_up)
      tt_test_fail(__FILE__, __LINE__,
                   "not quiet: %" PRId64 " coroutines, %" PRId64 " channels (want %" PRId64 ")",
                   tt_num_coroutines(), tt__chan_count_live(), live);
    tt_sleep(50 * TT_USEC);
  }
}

/* Deadlines for waits that must end on their own: generous, so a hang fails instead of hanging. */
static int64_t soon(void) { return tt_now() + (int64_t)(30 * tt_test_slow()) * TT_SEC; }

/* A page that faults when touched: the receive destination of select cases that must never
 * fire (Go evaluates nothing of a case that is not chosen, not even its destination). */
static void *guard_page(void) {
  void *p =
      mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT(p != MAP_FAILED);
  return p;
}

static void guard_free(void *p) { ASSERT_EQ(munmap(p, (size_t)sysconf(_SC_PAGESIZE)), 0); }

/* The first 25 primes, as sieve1.go and sieve2.go list them. */
static const int go_primes[25] = {2,  3,  5,  7,  11, 13, 17, 19, 23, 29, 31, 37, 41,
                                  43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97};

/* The smallest prime above p, by trial division: the reference the sieves are checked against. */
static int64_t next_prime(int64_t p) {
  for (int64_t q = p + 1;; q++) {
    bool prime = q >= 2;
    for (int64_t d = 2; prime && d * d <= q; d++)
      if (q % d == 0)
        prime = false;
    if (prime)
      return q;
  }
}

/* Checks the n values received from primes against the primes in order. */
static void check_primes(tt_chan *primes, int64_t n, size_t elem) {
  int64_t want = 1;
  for (int64_t i = 0; i < n; i++) {
    int64_t x = 0;
    if (elem == sizeof(int)) {
      int v;
      ASSERT_OK(tt_chan_recv(primes, &v, NULL));
      x = v;
    } else {
      ASSERT_OK(tt_chan_recv(primes, &x, NULL));
    }
    want = next_prime(want);
    if (i < 25)
      ASSERT_EQ(want, go_primes[i]);
    if (x != want)
      tt_test_fail(__FILE__, __LINE__, "prime %" PRId64 ": %" PRId64 " != %" PRId64, i, x, want);
  }
}

/* ---- sieve1.go ------------------------------------------------------------------------------- */
/* A linear chain of divisibility filters (one coroutine each) fed by a generator of 2, 3, 4, ...
 * yields the primes in order. Go checks the primes up to 97; this checks more. Go leaves the
 * chain blocked at exit; here closing the output makes the chain fold up from its end: a stage
 * whose send fails closes its input, so the stage before it fails next. */

struct s1_filter {
  tt_chan *in, *out;
  int prime;
};

static void s1_generate(void *p) {
  tt_chan *ch = p;
  for (int i = 2;; i++) {
    int e = tt_chan_send(ch, &i);
    if (e != 0) {
      ASSERT_EQ(e, TT_ECLOSED); /* the first filter stopped */
      return;
    }
  }
}

static void s1_filter(void *p) {
  struct s1_filter f = *(struct s1_filter *)p;
  free(p);
  int i;
  while (tt_chan_recv(f.in, &i, NULL) == 0) {
    if (i % f.prime == 0)
      continue;
    int e = tt_chan_send(f.out, &i);
    if (e != 0) {
      ASSERT_EQ(e, TT_ECLOSED);
      break;
    }
  }
  tt_chan_close(f.in); /* the stage before us fails on its next send */
}

static void s1_sieve(void *p) {
  tt_chan *primes = p;
  tt_chan *ch = mk(sizeof(int), 0);
  GO(s1_generate, ch, ch);
  for (;;) {
    int prime;
    ASSERT_OK(tt_chan_recv(ch, &prime, NULL)); /* nobody closes it while we receive */
    if (tt_chan_send(primes, &prime) != 0)
      break; /* the consumer has all it wants */
    tt_chan *ch1 = mk(sizeof(int), 0);
    struct s1_filter *f = malloc(sizeof *f);
    ASSERT(f != NULL);
    *f = (struct s1_filter){ch, ch1, prime};
    GO(s1_filter, f, ch, ch1);
    ASSERT_OK(tt_chan_release(ch)); /* the filter holds it now */
    ch = ch1;
  }
  ASSERT_OK(tt_chan_close(ch));
  ASSERT_OK(tt_chan_release(ch));
}

static int sieve1_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *primes = mk(sizeof(int), 0);
  GO(s1_sieve, primes, primes);
  check_primes(primes, SCALED(1000, 25), sizeof(int));
  ASSERT_OK(tt_chan_close(primes));
  ASSERT_OK(tt_chan_release(primes));
  await_quiet(live);
  return 0;
}

TEST(chan_go_sieve1) { tt_test_run(sieve1_main, NULL, 0); }

/* ---- sieve2.go ------------------------------------------------------------------------------- */
/* The Eratosthenes-like sieve over odd candidates: per prime a generator of its odd multiples, a
 * merger keeping them in a heap that emits all composites in increasing order (duplicates
 * included), a sieving coroutine removing them from the candidates, and a proxy with an unbounded
 * buffer (a select whose send case is disabled with a nil channel while the buffer is empty) that
 * feeds the primes back to the merger. The output must be the primes in order. Teardown: closing
 * the output stops the sieving coroutine, which closes the candidates, the composites and the
 * proxy; the proxy then closes the feedback, and the merger closes every multiples channel. */

static void s2_odds(void *p) {
  tt_chan *out = p;
  for (int64_t n = 5;; n += 2)
    if (tt_chan_send(out, &n) != 0)
      return;
}

struct s2_mult {
  tt_chan *out;
  int64_t p;
};

static void s2_multiples(void *p) {
  struct s2_mult m = *(struct s2_mult *)p;
  free(p);
  for (int64_t n = m.p * m.p;; n += 2 * m.p)
    if (tt_chan_send(m.out, &n) != 0)
      return;
}

static tt_chan *s2_make_multiples(int64_t p) {
  tt_chan *out = mk(sizeof(int64_t), 10);
  struct s2_mult *m = malloc(sizeof *m);
  ASSERT(m != NULL);
  *m = (struct s2_mult){out, p};
  GO(s2_multiples, m, out);
  return out;
}

struct s2_pair {
  tt_chan *in, *out;
};

/* sendproxy: receives from in into a growing FIFO, sends its head to out, never blocking in. */
static void s2_proxy(void *p) {
  struct s2_pair a = *(struct s2_pair *)p;
  free(p);
  size_t cap = 16, head = 0, len = 0;
  int64_t *q = malloc(cap * sizeof *q);
  ASSERT(q != NULL);
  for (;;) {
    int64_t e = len ? q[head] : 0, got = 0;
    tt_select_case cs[2] = {TT_CASE_RECV(a.in, &got), TT_CASE_SEND(len ? a.out : NULL, &e)};
    int r = tt_select(cs, 2);
    if (r == 0) {
      if (!cs[0].ok)
        break; /* the sieve closed us */
      if (len == cap) {
        int64_t *nq = malloc(2 * cap * sizeof *nq);
        ASSERT(nq != NULL);
        for (size_t i = 0; i < len; i++)
          nq[i] = q[(head + i) % cap];
        free(q);
        q = nq;
        head = 0;
        cap *= 2;
      }
      q[(head + len++) % cap] = got;
    } else {
      ASSERT_EQ(r, 1);
      ASSERT_EQ(cs[1].err, 0);
      head = (head + 1) % cap;
      len--;
    }
  }
  free(q);
  ASSERT_OK(tt_chan_close(a.out));
}

struct s2_peek {
  int64_t head;
  tt_chan *ch;
};

struct s2_heap {
  struct s2_peek *v;
  size_t n, cap;
};

static void s2_push(struct s2_heap *h, struct s2_peek x) {
  if (h->n == h->cap) {
    h->cap = h->cap ? 2 * h->cap : 16;
    h->v = realloc(h->v, h->cap * sizeof *h->v);
    ASSERT(h->v != NULL);
  }
  size_t i = h->n++;
  while (i > 0 && h->v[(i - 1) / 2].head > x.head) {
    h->v[i] = h->v[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h->v[i] = x;
}

static struct s2_peek s2_pop(struct s2_heap *h) {
  ASSERT(h->n > 0);
  struct s2_peek top = h->v[0], x = h->v[--h->n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n)
      break;
    if (c + 1 < h->n && h->v[c + 1].head < h->v[c].head)
      c++;
    if (h->v[c].head >= x.head)
      break;
    h->v[i] = h->v[c];
    i = c;
  }
  if (h->n > 0)
    h->v[i] = x;
  return top;
}

/* Advances the smallest multiples stream: min becomes its head, and it moves to its next value. */
static int64_t s2_advance(struct s2_heap *h) {
  struct s2_peek m = s2_pop(h);
  int64_t min = m.head;
  ASSERT_OK(tt_chan_recv(m.ch, &m.head, NULL));
  s2_push(h, m);
  return min;
}

struct s2_merge_arg {
  tt_chan *primes, *composites;
};

static void s2_merger(void *p) {
  struct s2_merge_arg a = *(struct s2_merge_arg *)p;
  free(p);
  struct s2_heap h = {0};
  int64_t min = 15, prime, head;
  tt_chan *m = NULL;
  while (tt_chan_recv(a.primes, &prime, NULL) == 0) {
    m = s2_make_multiples(prime);
    ASSERT_OK(tt_chan_recv(m, &head, NULL));
    bool stop = false;
    while (!stop && min < head) {
      stop = tt_chan_send(a.composites, &min) != 0;
      if (!stop)
        min = s2_advance(&h);
    }
    if (stop)
      break;
    while (min == head)
      min = s2_advance(&h);
    if (tt_chan_send(a.composites, &head) != 0)
      break;
    ASSERT_OK(tt_chan_recv(m, &head, NULL));
    s2_push(&h, (struct s2_peek){head, m});
    m = NULL;
  }
  /* Stop every generator of multiples. */
  if (m) {
    ASSERT_OK(tt_chan_close(m));
    ASSERT_OK(tt_chan_release(m));
  }
  for (size_t i = 0; i < h.n; i++) {
    ASSERT_OK(tt_chan_close(h.v[i].ch));
    ASSERT_OK(tt_chan_release(h.v[i].ch));
  }
  free(h.v);
}

struct s2_sieve_arg {
  tt_chan *composites, *primes, *out;
};

static void s2_sieve(void *p) {
  struct s2_sieve_arg a = *(struct s2_sieve_arg *)p;
  free(p);
  /* The feedback goes through a proxy, so that this coroutine never blocks on the merger. */
  tt_chan *proxy = mk(sizeof(int64_t), 10);
  struct s2_pair *pa = malloc(sizeof *pa);
  ASSERT(pa != NULL);
  *pa = (struct s2_pair){proxy, a.primes};
  GO(s2_proxy, pa, proxy, a.primes);
  tt_chan *cand = mk(sizeof(int64_t), 50);
  GO(s2_odds, cand, cand);
  int64_t pr, c;
  ASSERT_OK(tt_chan_recv(cand, &pr, NULL));
  while (tt_chan_recv(a.composites, &c, NULL) == 0) {
    bool stop = false;
    while (!stop && pr < c) {
      stop = tt_chan_send(proxy, &pr) != 0 || tt_chan_send(a.out, &pr) != 0;
      if (!stop)
        ASSERT_OK(tt_chan_recv(cand, &pr, NULL));
    }
    if (stop)
      break;
    if (pr == c)
      ASSERT_OK(tt_chan_recv(cand, &pr, NULL));
  }
  ASSERT_OK(tt_chan_close(cand));
  ASSERT_OK(tt_chan_close(proxy));
  tt_chan_close(a.composites);
}

static int sieve2_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *out = mk(sizeof(int64_t), 10);
  ASSERT_OK(tt_chan_send_val(out, int64_t, 2));
  ASSERT_OK(tt_chan_send_val(out, int64_t, 3));
  tt_chan *composites = mk(sizeof(int64_t), 50);
  tt_chan *primes = mk(sizeof(int64_t), 10);
  ASSERT_OK(tt_chan_send_val(primes, int64_t, 3));
  struct s2_merge_arg *ma = malloc(sizeof *ma);
  struct s2_sieve_arg *sa = malloc(sizeof *sa);
  ASSERT(ma != NULL && sa != NULL);
  *ma = (struct s2_merge_arg){primes, composites};
  *sa = (struct s2_sieve_arg){composites, primes, out};
  GO(s2_merger, ma, primes, composites);
  GO(s2_sieve, sa, composites, primes, out);
  ASSERT_OK(tt_chan_release(composites));
  ASSERT_OK(tt_chan_release(primes));
  check_primes(out, SCALED(10000, 25), sizeof(int64_t));
  ASSERT_OK(tt_chan_close(out));
  ASSERT_OK(tt_chan_release(out));
  await_quiet(live);
  return 0;
}

TEST(chan_go_sieve2) { tt_test_run(sieve2_main, NULL, 0); }

/* ---- powser1.go ------------------------------------------------------------------------------ */
/* McIlroy's power series: a series is a demand channel pair (send a request on req, receive the
 * next rational coefficient on dat), and every operator is a coroutine. The checks are Go's:
 * Ones, Add, Diff, Integ, Cmul, Sub, Mul, Exp and the arctangent from MonSubst, with Go's
 * expected coefficients (Go's two count-0 checks, "Add Ones Ones" and "Add Ones Twos", are made to
 * check five terms). Operators built on the fly (Mul splits its inputs and recurses once per term;
 * Exp is a feedback loop through split) make some two hundred coroutines. Go leaves them blocked at
 * exit; here every blocking step also selects on a quit channel, closed at the end. */

typedef struct rat {
  int64_t num, den; /* den == 0: the end mark (Go's finis) */
} rat;

static const rat finis = {1, 0};

static int64_t gcd64(int64_t a, int64_t b) {
  if (a < 0)
    a = -a;
  if (b < 0)
    b = -b;
  while (b != 0) {
    int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

static rat mkrat(int64_t num, int64_t den) {
  if (den == 0)
    return finis;
  if (den < 0) {
    num = -num;
    den = -den;
  }
  int64_t g = gcd64(num, den);
  return (rat){num / g, den / g};
}

static rat itor(int64_t n) { return (rat){n, 1}; }
static bool is_end(rat u) { return u.den == 0; }
static bool rat_eq(rat u, rat v) { return u.num == v.num && u.den == v.den; }

static rat rat_add(rat u, rat v) {
  int64_t g = gcd64(u.den, v.den);
  return mkrat(u.num * (v.den / g) + v.num * (u.den / g), u.den * (v.den / g));
}

static rat rat_mul(rat u, rat v) {
  if (is_end(u) || is_end(v))
    return finis;
  int64_t g1 = gcd64(u.num, v.den), g2 = gcd64(v.num, u.den);
  if (g1 == 0)
    g1 = 1;
  if (g2 == 0)
    g2 = 1;
  return mkrat((u.num / g1) * (v.num / g2), (u.den / g2) * (v.den / g1));
}

typedef struct ps {
  tt_chan *req, *dat;
} ps;

/* Closed at the end of the test: every process's next step fails, and it returns. */
static tt_chan *ps_quit;

static ps ps_make(void) { return (ps){mk(sizeof(int), 0), mk(sizeof(rat), 0)}; }

static ps ps_dup(ps u) {
  ASSERT_OK(tt_chan_retain(u.req));
  ASSERT_OK(tt_chan_retain(u.dat));
  return u;
}

static void ps_release(ps u) {
  ASSERT_OK(tt_chan_release(u.req));
  ASSERT_OK(tt_chan_release(u.dat));
}

/* Runs a select over the n cases in cs (which has room for one more: the quit case). Returns true
 * and the index of the case that fired in *fired, or false once the test is over. */
static bool ps_do(tt_select_case *cs, size_t n, int *fired) {
  if (tt_chan_try_recv(ps_quit, NULL, NULL) == TT_ECLOSED)
    return false;
  cs[n] = TT_CASE_RECV(ps_quit, NULL);
  int r = tt_select(cs, n + 1);
  ASSERT(r >= 0 && (size_t)r <= n);
  if ((size_t)r == n)
    return false;
  ASSERT_EQ(cs[r].err, 0);
  *fired = r;
  return true;
}

static bool ps_send(tt_chan *ch, const void *v) {
  tt_select_case cs[2] = {TT_CASE_SEND(ch, v)};
  int f;
  return ps_do(cs, 1, &f);
}

static bool ps_recv(tt_chan *ch, void *v) {
  tt_select_case cs[2] = {TT_CASE_RECV(ch, v)};
  int f;
  return ps_do(cs, 1, &f);
}

static bool get(ps in, rat *out) {
  int seq = 1;
  return ps_send(in.req, &seq) && ps_recv(in.dat, out);
}

static bool put(rat d, ps out) {
  int seq;
  return ps_recv(out.req, &seq) && ps_send(out.dat, &d);
}

/* Gets one item from each of two series, requesting both before waiting for either (Go's getn:
 * a select of two sends and two receives, each disabled with a nil channel when done). */
static bool get2(ps in0, ps in1, rat out[2]) {
  ps in[2] = {in0, in1};
  tt_chan *req[2] = {in0.req, in1.req}, *dat[2] = {NULL, NULL};
  int seq = 1;
  for (int k = 0; k < 4; k++) {
    tt_select_case cs[5] = {TT_CASE_SEND(req[0], &seq), TT_CASE_SEND(req[1], &seq),
                            TT_CASE_RECV(dat[0], &out[0]), TT_CASE_RECV(dat[1], &out[1])};
    int f;
    if (!ps_do(cs, 4, &f))
      return false;
    if (f < 2) {
      dat[f] = in[f].dat;
      req[f] = NULL;
    } else {
      dat[f - 2] = NULL;
    }
  }
  return true;
}

/* Serves out's requests from in, forever (until quit). */
static void copy_ps(ps in, ps out) {
  int seq;
  rat r;
  while (ps_recv(out.req, &seq) && get(in, &r) && ps_send(out.dat, &r))
    ;
}

/* What a process gets: its series and parameters. */
struct ps_args {
  ps u, v, z, out[2];
  tt_chan *wait;
  rat c;
  int n;
};

static struct ps_args ps_take(void *p) {
  struct ps_args a = *(struct ps_args *)p;
  free(p);
  return a;
}

/* Spawns a process with references to every channel in a, and to quit. */
static void ps_spawn(void (*fn)(void *), struct ps_args a) {
  struct ps_args *p = malloc(sizeof *p);
  ASSERT(p != NULL);
  *p = a;
  tt_chan *sh[12];
  size_t n = 0;
  sh[n++] = ps_quit;
  const ps *all[] = {&a.u, &a.v, &a.z, &a.out[0], &a.out[1]};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (all[i]->req) {
      sh[n++] = all[i]->req;
      sh[n++] = all[i]->dat;
    }
  if (a.wait)
    sh[n++] = a.wait;
  go_stack(fn, p, sh, n, 64 * 1024);
}

/* Constructors take over their caller's references to their input series (ps_dup keeps one) and
 * return the new series, whose references the caller then holds. */

static void repeat_proc(void *p) {
  struct ps_args a = ps_take(p);
  while (put(a.c, a.z))
    ;
}

static ps Rep(rat c) {
  ps z = ps_make();
  ps_spawn(repeat_proc, (struct ps_args){.z = z, .c = c});
  return z;
}

static void add_proc(void *p) {
  struct ps_args a = ps_take(p);
  for (;;) {
    int seq;
    rat uv[2];
    if (!ps_recv(a.z.req, &seq) || !get2(a.u, a.v, uv))
      return;
    int ends = is_end(uv[0]) + 2 * is_end(uv[1]);
    rat r = ends == 0 ? rat_add(uv[0], uv[1]) : ends == 1 ? uv[1] : ends == 2 ? uv[0] : finis;
    if (!ps_send(a.z.dat, &r))
      return;
    if (ends == 1)
      return copy_ps(a.v, a.z);
    if (ends == 2)
      return copy_ps(a.u, a.z);
  }
}

static ps Add(ps u, ps v) {
  ps z = ps_make();
  ps_spawn(add_proc, (struct ps_args){.u = u, .v = v, .z = z});
  ps_release(u);
  ps_release(v);
  return z;
}

static void cmul_proc(void *p) {
  struct ps_args a = ps_take(p);
  for (;;) {
    int seq;
    rat u;
    if (!ps_recv(a.z.req, &seq) || !get(a.u, &u))
      return;
    rat r = rat_mul(a.c, u);
    if (!ps_send(a.z.dat, &r) || is_end(u))
      return;
  }
}

static ps Cmul(rat c, ps u) {
  ps z = ps_make();
  ps_spawn(cmul_proc, (struct ps_args){.u = u, .z = z, .c = c});
  ps_release(u);
  return z;
}

static ps Sub(ps u, ps v) { return Add(u, Cmul(itor(-1), v)); }

static void diff_proc(void *p) {
  struct ps_args a = ps_take(p);
  int seq;
  rat u;
  if (!ps_recv(a.z.req, &seq) || !get(a.u, &u))
    return;
  if (!is_end(u)) {
    for (int64_t i = 1;; i++) {
      if (!get(a.u, &u))
        return;
      if (is_end(u))
        break;
      rat r = rat_mul(itor(i), u);
      if (!ps_send(a.z.dat, &r) || !ps_recv(a.z.req, &seq))
        return;
    }
  }
  ps_send(a.z.dat, &finis);
}

static ps Diff(ps u) {
  ps z = ps_make();
  ps_spawn(diff_proc, (struct ps_args){.u = u, .z = z});
  ps_release(u);
  return z;
}

static void integ_proc(void *p) {
  struct ps_args a = ps_take(p);
  if (!put(a.c, a.z))
    return;
  for (int64_t i = 1;; i++) {
    int seq;
    rat u;
    if (!ps_recv(a.z.req, &seq) || !get(a.u, &u))
      return;
    rat r = rat_mul(mkrat(1, i), u);
    if (!ps_send(a.z.dat, &r) || is_end(u))
      return;
  }
}

/* Integrates, with c the constant of integration. */
static ps Integ(rat c, ps u) {
  ps z = ps_make();
  ps_spawn(integ_proc, (struct ps_args){.u = u, .z = z, .c = c});
  ps_release(u);
  return z;
}

/* split: one series read at two rates. Each generation of dosplit serves one item to both
 * outputs; the newest serves out[0] (renamed so), and a generation may serve out[1] only once the
 * one before it has (the wait/release signal). */
static void dosplit_proc(void *p) {
  struct ps_args a = ps_take(p);
  bool both = false;
  int seq = 0;
  tt_select_case cs[3] = {TT_CASE_RECV(a.out[0].req, &seq), TT_CASE_RECV(a.wait, &seq)};
  int f;
  if (!ps_do(cs, 2, &f))
    return;
  if (f == 1) {
    both = true;
    tt_select_case cs2[3] = {TT_CASE_RECV(a.out[0].req, &seq), TT_CASE_RECV(a.out[1].req, &seq)};
    if (!ps_do(cs2, 2, &f))
      return;
    if (f == 1) {
      ps t = a.out[0];
      a.out[0] = a.out[1];
      a.out[1] = t;
    }
  }
  if (!ps_send(a.u.req, &seq))
    return;
  tt_chan *release = mk(sizeof(int), 0);
  ps_spawn(dosplit_proc, (struct ps_args){.u = a.u, .out = {a.out[0], a.out[1]}, .wait = release});
  rat dat;
  if (!ps_recv(a.u.dat, &dat) || !ps_send(a.out[0].dat, &dat))
    return;
  if (!both && !ps_recv(a.wait, &seq))
    return;
  if (!ps_recv(a.out[1].req, &seq) || !ps_send(a.out[1].dat, &dat))
    return;
  int zero = 0;
  ps_send(release, &zero);
}

/* Starts splitting in onto out; returns once the first generation runs (false: quit). */
static bool split(ps in, ps out[2]) {
  tt_chan *release = mk(sizeof(int), 0);
  ps_spawn(dosplit_proc, (struct ps_args){.u = in, .out = {out[0], out[1]}, .wait = release});
  int zero = 0;
  bool ok = ps_send(release, &zero);
  ASSERT_OK(tt_chan_release(release));
  return ok;
}

static void split_proc(void *p) {
  struct ps_args a = ps_take(p);
  split(a.u, a.out);
}

static void Split(ps u, ps out[2]) {
  out[0] = ps_make();
  out[1] = ps_make();
  ps_spawn(split_proc, (struct ps_args){.u = u, .out = {out[0], out[1]}});
  ps_release(u);
}

static ps Mul(ps u, ps v);

/* Multiplies: with U = u + x*UU and V = v + x*VV, UV = u*v + x*(u*VV + v*UU) + x*x*UU*VV. */
static void mul_proc(void *p) {
  struct ps_args a = ps_take(p);
  int seq;
  rat uv[2], r;
  if (!ps_recv(a.z.req, &seq) || !get2(a.u, a.v, uv))
    return;
  if (is_end(uv[0]) || is_end(uv[1])) {
    ps_send(a.z.dat, &finis);
    return;
  }
  r = rat_mul(uv[0], uv[1]);
  if (!ps_send(a.z.dat, &r))
    return;
  ps uu[2], vv[2];
  Split(a.u, uu);
  Split(a.v, vv);
  ps w = Add(Cmul(uv[0], vv[0]), Cmul(uv[1], uu[0]));
  if (!ps_recv(a.z.req, &seq) || !get(w, &r) || !ps_send(a.z.dat, &r))
    return;
  copy_ps(Add(w, Mul(uu[1], vv[1])), a.z);
}

static ps Mul(ps u, ps v) {
  ps z = ps_make();
  ps_spawn(mul_proc, (struct ps_args){.u = u, .v = v, .z = z});
  ps_release(u);
  ps_release(v);
  return z;
}

/* exp(U) for U with constant term 0 (which is ignored): Z' = Z*U', integrated, fed back. */
static ps Exp(ps u) {
  ps zz[2] = {ps_make(), ps_make()};
  ps in = Integ(itor(1), Mul(ps_dup(zz[0]), Diff(u)));
  ASSERT(split(in, zz));
  ps_release(in);
  ps_release(zz[0]);
  return zz[1];
}

/* U(c*x^n): each term multiplied by c^i and followed by n-1 zeros. */
static void monsubst_proc(void *p) {
  struct ps_args a = ps_take(p);
  rat c = itor(1);
  for (;;) {
    int seq;
    rat u;
    if (!ps_recv(a.z.req, &seq) || !get(a.u, &u))
      return;
    rat r = rat_mul(u, c);
    if (!ps_send(a.z.dat, &r) || is_end(u))
      return;
    c = rat_mul(c, a.c);
    for (int i = 1; i < a.n; i++)
      if (!put(itor(0), a.z))
        return;
  }
}

static ps MonSubst(ps u, rat c0, int n) {
  ps z = ps_make();
  ps_spawn(monsubst_proc, (struct ps_args){.u = u, .z = z, .c = c0, .n = n});
  ps_release(u);
  return z;
}

/* Checks the next term of u (term i of what). */
static void check_term(ps u, rat c, int i, const char *what) {
  rat r;
  ASSERT(get(u, &r));
  if (!rat_eq(r, c))
    tt_test_fail(__FILE__, __LINE__,
                 "%s: term %d: got %" PRId64 "/%" PRId64 ", should get %" PRId64 "/%" PRId64, what,
                 i, r.num, r.den, c.num, c.den);
}

/* Go's check: the next count terms of u all equal c. Takes over u. */
static void check_ps(ps u, rat c, int count, const char *what) {
  for (int i = 0; i < count; i++)
    check_term(u, c, i, what);
  ps_release(u);
}

enum { PS_N = 10 };

/* Go's checka: the next PS_N terms of u are a[0..PS_N). Takes over u. */
static void checka_ps(ps u, const rat *a, const char *what) {
  for (int i = 0; i < PS_N; i++)
    check_term(u, a[i], i, what);
  ps_release(u);
}

static int powser1_main(void *p) {
  int64_t live = tt__chan_count_live();
  ps_quit = mk(0, 0);
  ps ones = Rep(itor(1)), twos = Rep(itor(2));
  rat a[PS_N];
  check_ps(ps_dup(ones), itor(1), 5, "Ones");
  check_ps(Add(ps_dup(ones), ps_dup(ones)), itor(2), 5, "Add Ones Ones"); /* 2 2 2 2 2 */
  check_ps(Add(ps_dup(ones), ps_dup(twos)), itor(3), 5, "Add Ones Twos"); /* 3 3 3 3 3 */
  for (int i = 0; i < PS_N; i++)
    a[i] = itor(i + 1);
  checka_ps(Diff(ps_dup(ones)), a, "Diff"); /* 1 2 3 4 5 */
  a[0] = itor(0);
  for (int i = 1; i < PS_N; i++)
    a[i] = mkrat(1, i);
  checka_ps(Integ(itor(0), ps_dup(ones)), a, "Integ");                     /* 0 1 1/2 1/3 1/4 1/5 */
  check_ps(Cmul(itor(-1), ps_dup(twos)), itor(-2), 10, "CMul");            /* -2 -2 -2 -2 -2 */
  check_ps(Sub(ps_dup(ones), ps_dup(twos)), itor(-1), 5, "Sub Ones Twos"); /* -1 -1 -1 -1 */
  for (int i = 0; i < PS_N; i++)
    a[i] = itor(i + 1);
  checka_ps(Mul(ps_dup(ones), ps_dup(ones)), a, "Mul"); /* 1 2 3 4 5 */
  const rat e[PS_N] = {itor(1),
                       itor(1),
                       mkrat(3, 2),
                       mkrat(13, 6),
                       mkrat(73, 24),
                       mkrat(167, 40),
                       mkrat(4051, 720),
                       mkrat(37633, 5040),
                       mkrat(43817, 4480),
                       mkrat(4596553, 362880)};
  checka_ps(Exp(ps_dup(ones)), e, "Exp"); /* 1 1 3/2 13/6 73/24 */
  for (int i = 0; i < PS_N; i++)
    a[i] = itor(i % 2 ? 0 : i % 4 ? -1 : 1);
  checka_ps(MonSubst(ps_dup(ones), itor(-1), 2), a, "MonSubst"); /* 1 0 -1 0 1 */
  for (int i = 0, c = 1; i < PS_N; i++) {
    if (i % 2 == 0) {
      a[i] = itor(0);
    } else {
      a[i] = mkrat(c, i);
      c = -c;
    }
  }
  checka_ps(Integ(itor(0), MonSubst(ps_dup(ones), itor(-1), 2)), a, "ATan"); /* 0 1 0 -1/3 0 1/5 */
  ps_release(ones);
  ps_release(twos);
  ASSERT_OK(tt_chan_close(ps_quit));
  ASSERT_OK(tt_chan_release(ps_quit));
  await_quiet(live);
  return 0;
}

TEST(chan_go_powser1) { tt_test_run(powser1_main, NULL, 0); }

/* ---- select.go ------------------------------------------------------------------------------- */
/* A loop of selects with two send cases and a default, disabling each case (nil channel) once it
 * fired: with two empty one-slot channels it sends twice, then takes the default; the values are
 * 1<<0 and 1<<1; with one channel it sends once (1<<2). Go evaluates every case's operands on
 * entry, also for nil channels, so the value function runs 10 times in all. Also Go's rule for
 * several ready cases: the choice is uniform, here over two closed channels and a ready send. */

static unsigned sel_counter, sel_shift;

static unsigned get_value(void) {
  sel_counter++;
  return 1u << sel_shift;
}

static int sel_send(tt_chan *a, tt_chan *b) {
  int i = 0;
  for (;;) {
    unsigned va = get_value(), vb = get_value();
    tt_select_case cs[2] = {TT_CASE_SEND(a, &va), TT_CASE_SEND(b, &vb)};
    int r = tt_select_try(cs, 2);
    if (r == TT_EAGAIN)
      break;
    ASSERT(r == 0 || r == 1);
    ASSERT_EQ(cs[r].err, 0);
    i++;
    if (r == 0)
      a = NULL;
    else
      b = NULL;
    sel_shift++;
  }
  return i;
}

static int select_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *a = mk(sizeof(unsigned), 1), *b = mk(sizeof(unsigned), 1);
  ASSERT_EQ(sel_send(a, b), 2);
  unsigned av = 0, bv = 0;
  ASSERT_OK(tt_chan_recv(a, &av, NULL));
  ASSERT_OK(tt_chan_recv(b, &bv, NULL));
  ASSERT_EQ(av | bv, 3);
  ASSERT_EQ(sel_send(a, NULL), 1);
  ASSERT_EQ(sel_counter, 10);
  ASSERT_OK(tt_chan_recv(a, &av, NULL));
  ASSERT_EQ(av, 4);

  /* Uniform choice among ready cases. */
  tt_chan *c1 = mk(sizeof(int), 0), *c2 = mk(sizeof(int), 0), *c3 = mk(sizeof(int), 1);
  ASSERT_OK(tt_chan_close(c1));
  ASSERT_OK(tt_chan_close(c2));
  int64_t n = SCALED(30000, 600), count[3] = {0};
  for (int64_t i = 0; i < n; i++) {
    int v = 1, w;
    tt_select_case cs[3] = {TT_CASE_RECV(c1, &w), TT_CASE_RECV(c2, &w), TT_CASE_SEND(c3, &v)};
    int r = tt_select(cs, 3);
    ASSERT(r >= 0 && r < 3);
    count[r]++;
    if (r == 2)
      ASSERT_OK(tt_chan_recv(c3, &w, NULL));
    else
      ASSERT(!cs[r].ok);
  }
  for (int k = 0; k < 3; k++)
    if (count[k] < n / 6)
      tt_test_fail(__FILE__, __LINE__, "case %d chosen %" PRId64 " times of %" PRId64, k, count[k],
                   n);
  ASSERT_OK(tt_chan_release(a));
  ASSERT_OK(tt_chan_release(b));
  ASSERT_OK(tt_chan_release(c1));
  ASSERT_OK(tt_chan_release(c2));
  ASSERT_OK(tt_chan_release(c3));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_go_select) { tt_test_run(select_main, NULL, 1); }

/* ---- select2.go ------------------------------------------------------------------------------ */
/* Selects do not consume memory: 100,000 selects (a receive that a sender satisfies, and a dummy
 * case never ready) after a warm-up round of as many must not grow the heap by more than Go's
 * bound, 110,000 bytes. Also with 16 cases (more than tether handles without allocating), and
 * the channels and coroutines are all gone at the end. */

struct sel2 {
  tt_chan *c;
  int64_t n;
};

static void sel2_sender(void *p) {
  struct sel2 *s = p;
  for (int64_t i = 0; i < s->n; i++)
    ASSERT_OK(tt_chan_send_val(s->c, int, 1));
}

static void sel2_round(struct sel2 *s, tt_chan *dummy, size_t ncases) {
  int64_t live = tt__chan_count_live();
  GO(sel2_sender, s, s->c);
  tt_select_case cs[16];
  int v;
  for (int64_t i = 0; i < s->n; i++) {
    cs[0] = TT_CASE_RECV(s->c, &v);
    for (size_t k = 1; k < ncases; k++)
      cs[k] = TT_CASE_RECV(dummy, &v);
    ASSERT_EQ(tt_select(cs, ncases), 0);
    ASSERT_EQ(v, 1);
  }
  await_quiet(live);
}

static int64_t heap_in_use(void) {
#if defined(__GLIBC__) && !defined(TT_TEST_SANITIZED) &&                                           \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  return (int64_t)(mi.uordblks + mi.hblkhd);
#else
  return -1; /* not measurable here (a sanitizer's allocator, or no mallinfo2) */
#endif
}

static int select2_main(void *p) {
  int64_t live = tt__chan_count_live();
  struct sel2 s = {mk(sizeof(int), 0), SCALED(100000, 500)};
  tt_chan *dummy = mk(sizeof(int), 0);
  for (size_t ncases = 2; ncases <= 16; ncases += 14) {
    sel2_round(&s, dummy, ncases); /* warm up */
    int64_t before = heap_in_use();
    sel2_round(&s, dummy, ncases);
    int64_t after = heap_in_use();
    if (before >= 0 && after - before > 110000)
      tt_test_fail(__FILE__, __LINE__,
                   "too much memory for %" PRId64 " selects of %zu cases: %" PRId64, s.n, ncases,
                   after - before);
  }
  ASSERT_OK(tt_chan_release(s.c));
  ASSERT_OK(tt_chan_release(dummy));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_go_select2) { tt_test_run(select2_main, NULL, 2); }

/* ---- select3.go ------------------------------------------------------------------------------ */
/* The blocking rules of plain operations and selects. Go's testBlock runs f in a goroutine and
 * says "always blocks" if it has not returned after 0.1 s. Here an operation that must block is
 * seen waiting (its wait reason), then ended: by closing its channel, or, for nil channels (which
 * nothing can make ready), by its deadline, which must be what ends it. One that must never block
 * must return (the wait for it fails only after many seconds). Go's testPanic cases are the error
 * returns of tether: sending on a closed channel is TT_ECLOSED (a select fires the case with that
 * error), and a nil channel's case is never chosen. */

struct blk {
  int (*fn)(struct blk *);
  tt_chan *ch;      /* a channel f may wait on: closed to end an "always blocks" wait */
  tt_chan *closed;  /* a closed channel */
  int64_t deadline; /* ends waits on nil channels */
  int result;
  tt_chan *done;
};

static void blk_run(void *p) {
  struct blk *b = p;
  b->result = b->fn(b);
  ASSERT_OK(tt_chan_send(b->done, NULL));
}

static void blk_spawn(struct blk *b) {
  b->done = mk(0, 1);
  tt_chan *sh[3] = {b->done, b->closed, b->ch};
  go_stack(blk_run, b, sh, b->ch ? 3 : 2, 0);
}

static void blk_finish(struct blk *b) {
  ASSERT_OK(tt_chan_recv_dl(b->done, NULL, NULL, soon()));
  ASSERT_OK(tt_chan_release(b->done));
  if (b->ch)
    ASSERT_OK(tt_chan_release(b->ch));
}

/* testBlock(never, f): f returns 0 without waiting on anything. */
static void block_never(tt_chan *closed, int (*fn)(struct blk *), tt_chan *ch) {
  struct blk b = {.fn = fn, .closed = closed, .ch = ch, .deadline = TT_FOREVER};
  blk_spawn(&b);
  blk_finish(&b);
  ASSERT_OK(b.result);
}

/* testBlock(always, f) for f on nil channels only: it waits (for reason) until its deadline. If a
 * loaded machine starts it so late that it times out before it is seen waiting, the timing alone
 * (as in Go's test) says it blocked. */
static void block_always_nil(tt_chan *closed, int (*fn)(struct blk *), int reason) {
  int64_t wait = (int64_t)(100 * tt_test_slow()) * TT_MSEC;
  struct blk b = {.fn = fn, .closed = closed, .deadline = tt_now() + wait};
  blk_spawn(&b);
  for (;;) {
    tt_counts c;
    ASSERT_OK(tt_counts_get(&c));
    if (c.by_reason[reason] >= 1 || tt_chan_len(b.done) > 0)
      break;
    tt_sleep(50 * TT_USEC);
  }
  blk_finish(&b);
  ASSERT_ERR(b.result, TT_ETIMEDOUT);
  ASSERT_GE(tt_now(), b.deadline);
}

/* testBlock(always, f) for f on b.ch: it waits (for reason) until ch closes; returns its result. */
static int block_always_chan(tt_chan *closed, int (*fn)(struct blk *), int reason, tt_chan *ch) {
  struct blk b = {.fn = fn, .closed = closed, .ch = ch, .deadline = TT_FOREVER};
  blk_spawn(&b);
  tt_test_await_reason(reason, 1);
  ASSERT_ERR(tt_chan_try_recv(b.done, NULL, NULL), TT_EAGAIN); /* still blocked */
  ASSERT_OK(tt_chan_close(ch));
  blk_finish(&b);
  return b.result;
}

static int f_nil_send(struct blk *b) { return tt_chan_send_dl(NULL, &(int){7}, b->deadline); }
static int f_nil_recv(struct blk *b) {
  int v;
  return tt_chan_recv_dl(NULL, &v, NULL, b->deadline);
}

static int f_async_send(struct blk *b) {
  tt_chan *ch = mk(sizeof(int), 1);
  int r = tt_chan_send_val(ch, int, 7);
  ASSERT_OK(tt_chan_release(ch));
  return r;
}

static int f_recv_closed(struct blk *b) {
  for (int i = 0; i < 10; i++) {
    int x = 5;
    ASSERT_ERR(tt_chan_recv(b->closed, &x, NULL), TT_ECLOSED);
    ASSERT_EQ(x, 0); /* the zero value */
    bool ok = true;
    x = 5;
    ASSERT_ERR(tt_chan_recv(b->closed, &x, &ok), TT_ECLOSED);
    ASSERT_EQ(x, 0);
    ASSERT(!ok);
  }
  return 0;
}

static int f_recv(struct blk *b) {
  int v;
  return tt_chan_recv(b->ch, &v, NULL);
}

static int f_select_empty(struct blk *b) { return tt_select_dl(NULL, 0, b->deadline); }

static int f_select_nil_recv(struct blk *b) {
  int v;
  tt_select_case cs[1] = {TT_CASE_RECV(NULL, &v)};
  return tt_select_dl(cs, 1, b->deadline);
}

static int f_select_nil_send(struct blk *b) {
  int v = 7;
  tt_select_case cs[1] = {TT_CASE_SEND(NULL, &v)};
  return tt_select_dl(cs, 1, b->deadline);
}

static int f_select_nil_both(struct blk *b) {
  int v = 7, w;
  tt_select_case cs[2] = {TT_CASE_RECV(NULL, &w), TT_CASE_SEND(NULL, &v)};
  return tt_select_dl(cs, 2, b->deadline);
}

/* Returns 100 + the case that fired, with its ok and err folded in. */
static int select_outcome(tt_select_case *cs, int r) {
  if (r < 0)
    return r;
  return 100 + 10 * r + (cs[r].ok ? 1 : 0) + (cs[r].err == TT_ECLOSED ? 2 : 0);
}

static int f_select_recv(struct blk *b) {
  int v = 5;
  tt_select_case cs[1] = {TT_CASE_RECV(b->ch, &v)};
  int r = select_outcome(cs, tt_select(cs, 1));
  ASSERT_EQ(v, 0);
  return r;
}

static int f_select_default(struct blk *b) {
  ASSERT_ERR(tt_select_try(NULL, 0), TT_EAGAIN);
  return 0;
}

static int f_select_nil_recv_default(struct blk *b) {
  int v;
  tt_select_case cs[1] = {TT_CASE_RECV(NULL, &v)};
  ASSERT_ERR(tt_select_try(cs, 1), TT_EAGAIN);
  return 0;
}

static int f_select_nil_send_default(struct blk *b) {
  int v = 7;
  tt_select_case cs[1] = {TT_CASE_SEND(NULL, &v)};
  ASSERT_ERR(tt_select_try(cs, 1), TT_EAGAIN);
  return 0;
}

static int f_select_ready_send(struct blk *b) {
  tt_chan *ch = mk(sizeof(int), 1);
  int v = 7;
  tt_select_case cs[1] = {TT_CASE_SEND(ch, &v)};
  ASSERT_EQ(tt_select_try(cs, 1), 0);
  ASSERT_EQ(cs[0].err, 0);
  ASSERT_EQ(tt_chan_len(ch), 1);
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

static int f_select_ready_recv(struct blk *b) {
  tt_chan *ch = mk(sizeof(int), 1);
  ASSERT_OK(tt_chan_send_val(ch, int, 7));
  int v = 0;
  tt_select_case cs[1] = {TT_CASE_RECV(ch, &v)};
  ASSERT_EQ(tt_select_try(cs, 1), 0);
  ASSERT(cs[0].ok);
  ASSERT_EQ(v, 7);
  ASSERT_OK(tt_chan_release(ch));
  return 0;
}

static int f_select_closed_recv(struct blk *b) {
  int v = 5;
  tt_select_case cs[1] = {TT_CASE_RECV(b->closed, &v)};
  ASSERT_EQ(tt_select(cs, 1), 0);
  ASSERT(!cs[0].ok);
  ASSERT_EQ(cs[0].err, TT_ECLOSED);
  ASSERT_EQ(v, 0);
  return 0;
}

static int f_select_self(struct blk *b) {
  int v = 1, w = 5;
  tt_select_case cs[2] = {TT_CASE_SEND(b->ch, &v), TT_CASE_RECV(b->ch, &w)};
  return select_outcome(cs, tt_select(cs, 2));
}

static int select3_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *closedch = mk(sizeof(int), 0);
  ASSERT_OK(tt_chan_close(closedch));

  /* Sending to or receiving from a nil channel blocks. */
  block_always_nil(closedch, f_nil_send, TT_WAIT_CHAN_SEND_NIL);
  block_always_nil(closedch, f_nil_recv, TT_WAIT_CHAN_RECV_NIL);
  /* A nil channel's case is never selected. */
  int v = 7;
  tt_select_case cs[2] = {TT_CASE_SEND(NULL, &v)};
  ASSERT_ERR(tt_select_try(cs, 1), TT_EAGAIN);
  cs[0] = TT_CASE_RECV(NULL, &v);
  ASSERT_ERR(tt_select_try(cs, 1), TT_EAGAIN);
  ASSERT_EQ(v, 7);
  /* Sending to a buffered channel with room never blocks. */
  block_never(closedch, f_async_send, NULL);
  /* Receiving from a closed channel never blocks, and gives the zero value and !ok. */
  block_never(closedch, f_recv_closed, NULL);
  /* Sending to a closed channel fails (Go panics). */
  ASSERT_ERR(tt_chan_send(closedch, &v), TT_ECLOSED);
  ASSERT_ERR(tt_chan_try_send(closedch, &v), TT_ECLOSED);
  /* Receiving from a channel that is not ready always blocks. */
  ASSERT_ERR(block_always_chan(closedch, f_recv, TT_WAIT_CHAN_RECV, mk(sizeof(int), 0)),
             TT_ECLOSED);
  /* An empty select blocks, and so do selects over nil channels only. */
  block_always_nil(closedch, f_select_empty, TT_WAIT_SELECT_NO_CASES);
  block_always_nil(closedch, f_select_nil_recv, TT_WAIT_SELECT);
  block_always_nil(closedch, f_select_nil_send, TT_WAIT_SELECT);
  block_always_nil(closedch, f_select_nil_both, TT_WAIT_SELECT);
  /* A select over channels that are not ready blocks (until the close makes its case fire). */
  ASSERT_EQ(block_always_chan(closedch, f_select_recv, TT_WAIT_SELECT, mk(sizeof(int), 0)),
            100 + 2);
  /* Selects with a default never block. */
  block_never(closedch, f_select_default, NULL);
  block_never(closedch, f_select_nil_recv_default, NULL);
  block_never(closedch, f_select_nil_send_default, NULL);
  /* Selects with a ready case never block. */
  block_never(closedch, f_select_ready_send, NULL);
  block_never(closedch, f_select_ready_recv, NULL);
  /* A closed channel's receive case behaves like the plain receive. */
  block_never(closedch, f_select_closed_recv, NULL);
  /* Its send case fires with the error (Go panics), blocking select or not. */
  cs[0] = TT_CASE_SEND(closedch, &v);
  ASSERT_EQ(tt_select(cs, 1), 0);
  ASSERT_EQ(cs[0].err, TT_ECLOSED);
  cs[0] = TT_CASE_SEND(closedch, &v);
  ASSERT_EQ(tt_select_try(cs, 1), 0);
  ASSERT_EQ(cs[0].err, TT_ECLOSED);
  /* A select does not pair with itself: a send and a receive on one unbuffered channel block. */
  int r = block_always_chan(closedch, f_select_self, TT_WAIT_SELECT, mk(sizeof(int), 0));
  ASSERT(r == 100 + 2 || r == 110 + 2); /* either case fires on the close, with the error */

  ASSERT_OK(tt_chan_release(closedch));
  await_quiet(live);
  return 0;
}

TEST(chan_go_select3) { tt_test_run(select3_main, NULL, 2); }

/* ---- select4.go ------------------------------------------------------------------------------ */
/* The destination of a receive case that is not chosen is never evaluated or written (Go: f() in
 * `case *f() = <-c1` is never called): here it points at a page that faults when touched. The
 * chosen case stores 42 into a struct field. */

static int select4_main(void *p) {
  int64_t live = tt__chan_count_live();
  struct {
    int a;
  } x = {0};
  int *never = guard_page();
  tt_chan *c = mk(sizeof(int), 1), *c1 = mk(sizeof(int), 0);
  ASSERT_OK(tt_chan_send_val(c, int, 42));
  tt_select_case cs[2] = {TT_CASE_RECV(c1, never), TT_CASE_RECV(c, &x.a)};
  ASSERT_EQ(tt_select(cs, 2), 1);
  ASSERT(cs[1].ok);
  ASSERT_EQ(x.a, 42);
  /* The same as a select with a default, and with the nil-channel case. */
  ASSERT_OK(tt_chan_send_val(c, int, 43));
  tt_select_case cs2[3] = {TT_CASE_RECV(c1, never), TT_CASE_RECV(NULL, never),
                           TT_CASE_RECV(c, &x.a)};
  ASSERT_EQ(tt_select_try(cs2, 3), 2);
  ASSERT_EQ(x.a, 43);
  guard_free(never);
  ASSERT_OK(tt_chan_release(c));
  ASSERT_OK(tt_chan_release(c1));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_go_select4) { tt_test_run(select4_main, NULL, 1); }

/* ---- select racing with close (select4/6/7's edge cases) ------------------------------------- */
/* Senders and receivers select with two cases on the same channel (and a nil case), while the
 * channel is closed under them: every send that succeeded is received exactly once (buffered
 * values are still received after the close), every blocked select wakes exactly once, sends
 * after the close fail and receives after it drain then see !ok. */

struct race {
  tt_chan *c;
  _Atomic int64_t sent_n, sent_sum, recv_n, recv_sum;
  tt_wg wg;
};

struct race_sender {
  struct race *r;
  int64_t base;
};

static void race_send(void *p) {
  struct race_sender *s = p;
  struct race *r = s->r;
  int64_t n = 0, sum = 0;
  for (int64_t i = 1;; i++) {
    int64_t v = s->base + i;
    tt_select_case cs[3] = {TT_CASE_SEND(r->c, &v), TT_CASE_SEND(NULL, &v), TT_CASE_SEND(r->c, &v)};
    int k = tt_select(cs, 3);
    ASSERT(k == 0 || k == 2);
    if (cs[k].err == TT_ECLOSED)
      break;
    ASSERT_EQ(cs[k].err, 0);
    n++;
    sum += v;
  }
  atomic_fetch_add(&r->sent_n, n);
  atomic_fetch_add(&r->sent_sum, sum);
  tt_wg_done(&r->wg);
}

static void race_recv(void *p) {
  struct race *r = p;
  int64_t n = 0, sum = 0;
  for (;;) {
    int64_t v = -1, w = -1;
    tt_select_case cs[3] = {TT_CASE_RECV(r->c, &v), TT_CASE_RECV(r->c, &w), TT_CASE_RECV(NULL, &v)};
    int k = tt_select(cs, 3);
    ASSERT(k == 0 || k == 1);
    if (!cs[k].ok) {
      ASSERT_EQ(cs[k].err, TT_ECLOSED);
      break;
    }
    n++;
    sum += k == 0 ? v : w;
    ASSERT_EQ(k == 0 ? w : v, -1); /* the other case's destination is untouched */
  }
  atomic_fetch_add(&r->recv_n, n);
  atomic_fetch_add(&r->recv_sum, sum);
  tt_wg_done(&r->wg);
}

static void race_round(size_t cap) {
  int64_t live = tt__chan_count_live();
  static struct race r;
  static struct race_sender s[3];
  memset(&r, 0, sizeof r);
  r.c = mk(sizeof(int64_t), cap);
  tt_wg_add(&r.wg, 3 + 3);
  for (int i = 0; i < 3; i++) {
    s[i] = (struct race_sender){&r, (int64_t)(i + 1) << 40};
    GO(race_send, &s[i], r.c);
    GO(race_recv, &r, r.c);
  }
  /* Take some values here too, then close while everyone is busy. */
  int64_t k = SCALED(20000, 200), sum = 0;
  for (int64_t i = 0; i < k; i++) {
    int64_t v;
    ASSERT_OK(tt_chan_recv(r.c, &v, NULL));
    sum += v;
  }
  ASSERT_OK(tt_chan_close(r.c));
  ASSERT_OK(tt_wg_wait(&r.wg));
  ASSERT_EQ(atomic_load(&r.sent_n), atomic_load(&r.recv_n) + k);
  ASSERT_EQ(atomic_load(&r.sent_sum), atomic_load(&r.recv_sum) + sum);
  ASSERT_OK(tt_chan_release(r.c));
  await_quiet(live); /* before the next round reuses r */
}

static int select_close_race_main(void *p) {
  int64_t live = tt__chan_count_live();
  race_round(0);
  race_round(1);
  race_round(8);
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_go_select_close_race) { tt_test_run(select_close_race_main, NULL, 0); }

/* ---- select5.go ------------------------------------------------------------------------------ */
/* Go generates every phrasing of one send or receive on a one-slot channel: the bare operation, a
 * blocking select, or one with a default; with any subset of never-ready companion cases (a send
 * to and a receive from an unbuffered dummy channel, a send to and a receive from a nil channel),
 * the real case in every position; the value sent must be the value received. Then non-blocking
 * selects of companions only must take the default without touching any receive destination
 * (some of which would fault). Go counts the generated cases; so does this. */

static void *s5_guard;

/* Builds companions from the bits of extras into cs, and the real case at pos; returns the count.
 */
static size_t s5_cases(tt_select_case *cs, tt_chan *dummy, unsigned extras, size_t pos,
                       tt_select_case real, int *one) {
  tt_select_case comp[4];
  size_t nc = 0, n = 0;
  if (extras & 1)
    comp[nc++] = TT_CASE_SEND(dummy, one);
  if (extras & 2)
    comp[nc++] = TT_CASE_RECV(dummy, s5_guard);
  if (extras & 4)
    comp[nc++] = TT_CASE_SEND(NULL, one);
  if (extras & 8)
    comp[nc++] = TT_CASE_RECV(NULL, s5_guard);
  for (size_t i = 0; i <= nc; i++) {
    if (i == pos)
      cs[n++] = real;
    if (i < nc)
      cs[n++] = comp[i];
  }
  return n;
}

static int select5_main(void *p) {
  int64_t live = tt__chan_count_live();
  s5_guard = guard_page();
  tt_chan *c = mk(sizeof(int), 1), *dummy = mk(sizeof(int), 0);
  int n = 1, count = 0, one = 1;
  for (int is_send = 0; is_send < 2; is_send++) {
    for (int mode = 0; mode < 3; mode++) { /* bare, blocking select, select with default */
      for (unsigned extras = 0; extras < (mode ? 16u : 1u); extras++) {
        size_t ncomp = (size_t)__builtin_popcount(extras);
        for (size_t pos = 0; pos <= (mode ? ncomp : 0); pos++) {
          int x = -1, sv = n;
          if (!is_send)
            ASSERT_OK(tt_chan_send(c, &n));
          tt_select_case real = is_send ? TT_CASE_SEND(c, &sv) : TT_CASE_RECV(c, &x);
          if (mode == 0) {
            ASSERT_OK(is_send ? tt_chan_send(c, &sv) : tt_chan_recv(c, &x, NULL));
          } else {
            tt_select_case cs[5];
            size_t nc = s5_cases(cs, dummy, extras, pos, real, &one);
            int r = mode == 1 ? tt_select(cs, nc) : tt_select_try(cs, nc);
            ASSERT_EQ(r, (int)pos);
            ASSERT_EQ(cs[r].err, 0);
            ASSERT_EQ(cs[r].ok, !is_send);
          }
          if (is_send)
            ASSERT_OK(tt_chan_recv(c, &x, NULL));
          if (x != n)
            tt_test_fail(__FILE__, __LINE__, "have %d want %d", x, n);
          n++;
          count++;
        }
      }
    }
  }
  /* Non-blocking selects over companions only: the default, nothing written. */
  for (unsigned extras = 0; extras < 64; extras++) {
    int x = n;
    tt_select_case cs[6];
    size_t nc = 0;
    if (extras & 1)
      cs[nc++] = TT_CASE_SEND(dummy, &one);
    if (extras & 2)
      cs[nc++] = TT_CASE_SEND(NULL, &one);
    if (extras & 4)
      cs[nc++] = TT_CASE_RECV(dummy, s5_guard);
    if (extras & 8)
      cs[nc++] = TT_CASE_RECV(dummy, &x);
    if (extras & 16)
      cs[nc++] = TT_CASE_RECV(NULL, s5_guard);
    if (extras & 32)
      cs[nc++] = TT_CASE_RECV(NULL, &x);
    ASSERT_ERR(tt_select_try(nc ? cs : NULL, nc), TT_EAGAIN);
    if (x != n)
      tt_test_fail(__FILE__, __LINE__, "have %d want %d", x, n);
    n++;
    count++;
  }
  ASSERT_EQ(count, 2 * (1 + 2 * 48) + 64);
  guard_free(s5_guard);
  ASSERT_OK(tt_chan_release(c));
  ASSERT_OK(tt_chan_release(dummy));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_go_select5) { tt_test_run(select5_main, NULL, 1); }

/* Selects of 100+ cases: the one ready case among 128 is found wherever it is; among several
 * ready cases the choice is uniform (the same closed channel in 8 cases); a blocked select of 128
 * receives (or sends) on distinct channels is woken by the one channel that gets a partner, and
 * reports that case; 100 receive cases on one channel take one value once; 100 cases sending to
 * and receiving from one channel never pair with each other. */

enum { BIG = 128 };

struct big {
  tt_chan *ch[BIG];
  int k;
  bool send; /* the helper sends to ch[k] (else receives from it) */
  tt_chan *done;
};

static void big_helper(void *p) {
  struct big *b = p;
  tt_test_await_reason(TT_WAIT_SELECT, 1);
  int v = b->k * 10;
  if (b->send) {
    ASSERT_OK(tt_chan_send(b->ch[b->k], &v));
  } else {
    ASSERT_OK(tt_chan_recv(b->ch[b->k], &v, NULL));
    ASSERT_EQ(v, b->k + 1000);
  }
  ASSERT_OK(tt_chan_send(b->done, NULL));
}

static int select5_big_main(void *p) {
  int64_t live = tt__chan_count_live();
  void *guard = guard_page();
  tt_chan *dummy = mk(sizeof(int), 0), *full = mk(sizeof(int), 1), *empty = mk(sizeof(int), 1);
  tt_chan *c = mk(sizeof(int), 1), *closed = mk(sizeof(int), 0);
  ASSERT_OK(tt_chan_send_val(full, int, 0));
  ASSERT_OK(tt_chan_close(closed));
  tt_select_case cs[BIG];
  int one = 1;
  /* Never-ready cases of every kind, and one ready case at position k. */
  for (int k = 0; k < BIG; k++) {
    for (int mode = 0; mode < 4; mode++) {
      for (int i = 0; i < BIG; i++) {
        switch (i % 6) {
        case 0:
          cs[i] = TT_CASE_SEND(NULL, &one);
          break;
        case 1:
          cs[i] = TT_CASE_RECV(NULL, guard);
          break;
        case 2:
          cs[i] = TT_CASE_SEND(dummy, &one);
          break;
        case 3:
          cs[i] = TT_CASE_RECV(dummy, guard);
          break;
        case 4:
          cs[i] = TT_CASE_SEND(full, &one);
          break;
        default:
          cs[i] = TT_CASE_RECV(empty, guard);
          break;
        }
      }
      int x = -1, sv = k;
      bool send = mode & 1;
      if (!send)
        ASSERT_OK(tt_chan_send(c, &k));
      cs[k] = send ? TT_CASE_SEND(c, &sv) : TT_CASE_RECV(c, &x);
      int r = mode & 2 ? tt_select_try(cs, BIG) : tt_select(cs, BIG);
      ASSERT_EQ(r, k);
      ASSERT_EQ(cs[k].err, 0);
      if (send)
        ASSERT_OK(tt_chan_recv(c, &x, NULL));
      ASSERT_EQ(x, k);
    }
  }
  /* Uniform choice among 8 ready cases, all on one closed channel. */
  int64_t n = SCALED(40000, 800), count[8] = {0};
  for (int64_t t = 0; t < n; t++) {
    int v;
    for (int i = 0; i < BIG; i++)
      cs[i] = i % 16 == 5 ? TT_CASE_RECV(closed, &v)
              : i % 2     ? TT_CASE_RECV(dummy, guard)
                          : TT_CASE_SEND(NULL, &one);
    int r = tt_select(cs, BIG);
    ASSERT_EQ(r % 16, 5);
    ASSERT(!cs[r].ok);
    count[r / 16]++;
  }
  for (int j = 0; j < 8; j++)
    if (count[j] < n / 16)
      tt_test_fail(__FILE__, __LINE__, "case %d chosen %" PRId64 " times of %" PRId64, j * 16 + 5,
                   count[j], n);
  /* A blocked select over 128 distinct channels wakes for the one that becomes ready. */
  static struct big b;
  for (int i = 0; i < BIG; i++)
    b.ch[i] = mk(sizeof(int), 0);
  b.done = mk(0, 0);
  const int ks[] = {0, 77, BIG - 1};
  for (size_t t = 0; t < 2 * sizeof ks / sizeof ks[0]; t++) {
    b.k = ks[t / 2];
    b.send = t % 2 == 0;
    tt_chan *sh[BIG + 1];
    memcpy(sh, b.ch, sizeof b.ch);
    sh[BIG] = b.done;
    go_stack(big_helper, &b, sh, BIG + 1, 0);
    int vals[BIG];
    for (int i = 0; i < BIG; i++) {
      vals[i] = i + 1000;
      cs[i] = b.send ? TT_CASE_RECV(b.ch[i], guard) : TT_CASE_SEND(b.ch[i], &vals[i]);
    }
    if (b.send)
      cs[b.k].val = &vals[b.k];
    int r = tt_select(cs, BIG);
    ASSERT_EQ(r, b.k);
    ASSERT_EQ(cs[r].err, 0);
    if (b.send) {
      ASSERT(cs[r].ok);
      ASSERT_EQ(vals[b.k], b.k * 10);
    }
    ASSERT_OK(tt_chan_recv(b.done, NULL, NULL));
  }
  /* 100 cases on one channel: one value is taken once. */
  tt_chan *same = b.ch[0];
  b.k = 0;
  b.send = true;
  tt_chan *sh[BIG + 1];
  memcpy(sh, b.ch, sizeof b.ch);
  sh[BIG] = b.done;
  go_stack(big_helper, &b, sh, BIG + 1, 0);
  int vals[100];
  for (int i = 0; i < 100; i++) {
    vals[i] = -1;
    cs[i] = TT_CASE_RECV(same, &vals[i]);
  }
  int r = tt_select(cs, 100);
  ASSERT(r >= 0 && r < 100);
  for (int i = 0; i < 100; i++)
    ASSERT_EQ(vals[i], i == r ? 0 : -1);
  ASSERT_OK(tt_chan_recv(b.done, NULL, NULL));
  ASSERT_ERR(tt_chan_try_recv(same, &vals[0], NULL), TT_EAGAIN);
  /* 50 sends and 50 receives on one unbuffered channel: a select never pairs with itself. */
  for (int i = 0; i < 100; i++)
    cs[i] = i % 2 ? TT_CASE_RECV(same, guard) : TT_CASE_SEND(same, &one);
  ASSERT_ERR(tt_select_try(cs, 100), TT_EAGAIN);
  ASSERT_ERR(tt_select_dl(cs, 100, tt_now() + 20 * TT_MSEC), TT_ETIMEDOUT);

  for (int i = 0; i < BIG; i++)
    ASSERT_OK(tt_chan_release(b.ch[i]));
  ASSERT_OK(tt_chan_release(b.done));
  tt_chan *all[] = {dummy, full, empty, c, closed};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    ASSERT_OK(tt_chan_release(all[i]));
  guard_free(guard);
  await_quiet(live);
  return 0;
}

TEST(chan_go_select5_big) { tt_test_run(select5_big_main, NULL, 2); }

/* ---- select6.go ------------------------------------------------------------------------------ */
/* Go issue 2075: a select that gave up on c1 must not corrupt c1's queue of waiters. One goroutine
 * waits on c1, then a select waits on c1 and c2 (queued behind it); c2 fires; then two sends on
 * c1 must reach both the first waiter and the select's goroutine, now waiting on c1 again. First
 * with that order forced (each waiter seen blocked before the next starts), then raced. */

struct s6 {
  tt_chan *c1, *c2, *c3;
};

static void s6_g1(void *p) {
  struct s6 *s = p;
  bool b;
  ASSERT_OK(tt_chan_recv_dl(s->c1, &b, NULL, soon()));
}

static void s6_g2(void *p) {
  struct s6 *s = p;
  bool b = false;
  tt_select_case cs[2] = {TT_CASE_RECV(s->c1, &b), TT_CASE_RECV(s->c2, &b)};
  ASSERT_EQ(tt_select_dl(cs, 2, soon()), 1); /* Go: panic("dummy") if c1 fired */
  ASSERT(b);
  ASSERT_OK(tt_chan_send_dl(s->c3, &(bool){true}, soon()));
  ASSERT_OK(tt_chan_recv_dl(s->c1, &b, NULL, soon()));
}

static void s6_g3(void *p) {
  struct s6 *s = p;
  ASSERT_OK(tt_chan_send_dl(s->c2, &(bool){true}, soon()));
}

static int select6_main(void *p) {
  int64_t live = tt__chan_count_live();
  int64_t rounds = SCALED(1000, 20);
  for (int64_t i = 0; i < rounds; i++) {
    bool ordered = i < 5;
    struct s6 s = {mk(sizeof(bool), 0), mk(sizeof(bool), 0), mk(sizeof(bool), 0)};
    GO(s6_g1, &s, s.c1);
    if (ordered)
      tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
    GO(s6_g2, &s, s.c1, s.c2, s.c3);
    if (ordered)
      tt_test_await_reason(TT_WAIT_SELECT, 1);
    GO(s6_g3, &s, s.c2);
    bool b;
    ASSERT_OK(tt_chan_recv_dl(s.c3, &b, NULL, soon()));
    ASSERT_OK(tt_chan_send_dl(s.c1, &(bool){true}, soon()));
    ASSERT_OK(tt_chan_send_dl(s.c1, &(bool){true}, soon()));
    ASSERT_OK(tt_chan_release(s.c1));
    ASSERT_OK(tt_chan_release(s.c2));
    ASSERT_OK(tt_chan_release(s.c3));
    await_quiet(live); /* s lives on this stack: let everyone finish with it */
  }
  return 0;
}

TEST(chan_go_select6) { tt_test_run(select6_main, NULL, 0); }

/* ---- select7.go ------------------------------------------------------------------------------ */
/* A received value may be discarded (C needs a scratch destination): every pairing of a receiver
 * (plain receive, one-case select, two-case select with a never-ready channel) with a sender
 * (plain send, one-case select, two-case select with a never-ready channel) completes. Go yields
 * so the receiver blocks first; here that order is forced (the receiver seen waiting), then the
 * opposite (the sender seen waiting), then raced. */

static void s7_recv(tt_chan *c, int kind) {
  int scratch;
  if (kind == 0) {
    ASSERT_OK(tt_chan_recv(c, &scratch, NULL));
  } else if (kind == 1) {
    tt_select_case cs[1] = {TT_CASE_RECV(c, &scratch)};
    ASSERT_EQ(tt_select(cs, 1), 0);
  } else {
    tt_chan *c2 = mk(sizeof(int), 0);
    tt_select_case cs[2] = {TT_CASE_RECV(c, &scratch), TT_CASE_RECV(c2, &scratch)};
    ASSERT_EQ(tt_select(cs, 2), 0);
    ASSERT_OK(tt_chan_release(c2));
  }
  ASSERT_EQ(scratch, 1);
}

static void s7_send(tt_chan *c, int kind) {
  int one = 1;
  if (kind == 0) {
    ASSERT_OK(tt_chan_send(c, &one));
  } else if (kind == 1) {
    tt_select_case cs[1] = {TT_CASE_SEND(c, &one)};
    ASSERT_EQ(tt_select(cs, 1), 0);
  } else {
    tt_chan *c2 = mk(sizeof(int), 0);
    tt_select_case cs[2] = {TT_CASE_SEND(c, &one), TT_CASE_SEND(c2, &one)};
    ASSERT_EQ(tt_select(cs, 2), 0);
    ASSERT_OK(tt_chan_release(c2));
  }
}

struct s7 {
  tt_chan *c;
  int kind;
  tt_wg done;
};

static void s7_receiver(void *p) {
  struct s7 *s = p;
  s7_recv(s->c, s->kind);
  tt_wg_done(&s->done);
}

static void s7_sender(void *p) {
  struct s7 *s = p;
  s7_send(s->c, s->kind);
  tt_wg_done(&s->done);
}

static int select7_main(void *p) {
  int64_t live = tt__chan_count_live();
  static struct s7 s;
  int64_t raced = SCALED(2000, 5);
  for (int order = 0; order < 3; order++) { /* receiver first, sender first, raced */
    for (int64_t rep = 0; rep < (order == 2 ? raced : 1); rep++) {
      for (int sk = 0; sk < 3; sk++) {
        for (int rk = 0; rk < 3; rk++) {
          s.c = mk(sizeof(int), 0);
          tt_wg_init(&s.done);
          tt_wg_add(&s.done, 1);
          if (order == 1) {
            s.kind = sk;
            GO(s7_sender, &s, s.c);
            tt_test_await_reason(sk ? TT_WAIT_SELECT : TT_WAIT_CHAN_SEND, 1);
            s7_recv(s.c, rk);
          } else {
            s.kind = rk;
            GO(s7_receiver, &s, s.c);
            if (order == 0)
              tt_test_await_reason(rk ? TT_WAIT_SELECT : TT_WAIT_CHAN_RECV, 1);
            else
              tt_yield();
            s7_send(s.c, sk);
          }
          ASSERT_OK(tt_wg_wait(&s.done));
          ASSERT_OK(tt_chan_release(s.c));
          await_quiet(live);
        }
      }
    }
  }
  return 0;
}

TEST(chan_go_select7) { tt_test_run(select7_main, NULL, 0); }

/* ---- nonblock.go ----------------------------------------------------------------------------- */
/* Non-blocking sends and receives, unbuffered and with one slot, for elements of several sizes
 * (int32, int64, bool, a Go-like string header, a 100-byte array): on an empty channel a
 * non-blocking receive fails; once a receiver waits (Go sleeps for that; here it is seen waiting)
 * a non-blocking send succeeds and delivers the value; once a sender waits, or (buffered) has
 * sent, a non-blocking receive succeeds with its value. Both as try operations and as selects
 * with a default. */

struct nb {
  tt_chan *c, *sync;
  size_t size;
  const void *want; /* what the receiver must get */
  const void *give; /* what the sender sends */
};

static void nb_receiver(void *p) {
  struct nb *b = p;
  unsigned char buf[128];
  ASSERT_OK(tt_chan_recv(b->c, buf, NULL));
  ASSERT(memcmp(buf, b->want, b->size) == 0);
  ASSERT_OK(tt_chan_send_val(b->sync, bool, true));
}

static void nb_sender(void *p) {
  struct nb *b = p;
  ASSERT_OK(tt_chan_send(b->c, b->give));
  ASSERT_OK(tt_chan_send_val(b->sync, bool, true));
}

static int nb_try_send(tt_chan *c, const void *v, bool by_select) {
  if (!by_select)
    return tt_chan_try_send(c, v);
  tt_select_case cs[1] = {TT_CASE_SEND(c, v)};
  int r = tt_select_try(cs, 1);
  return r == 0 ? cs[0].err : r;
}

static int nb_try_recv(tt_chan *c, void *v, bool *ok, bool by_select) {
  if (!by_select)
    return tt_chan_try_recv(c, v, ok);
  tt_select_case cs[1] = {TT_CASE_RECV(c, v)};
  int r = tt_select_try(cs, 1);
  *ok = r == 0 && cs[0].ok;
  return r == 0 ? cs[0].err : r;
}

static void nb_one(size_t size, int buffer, bool by_select, const void *want, const void *give) {
  int64_t live = tt__chan_count_live();
  static struct nb b;
  b = (struct nb){mk(size, (size_t)buffer), mk(sizeof(bool), 0), size, want, give};
  unsigned char buf[128];
  bool ok = true, strobe;
  ASSERT_ERR(nb_try_recv(b.c, buf, &ok, by_select), TT_EAGAIN);

  GO(nb_receiver, &b, b.c, b.sync);
  tt_test_await_reason(TT_WAIT_CHAN_RECV, 1);
  ASSERT_OK(nb_try_send(b.c, want, by_select));
  ASSERT_OK(tt_chan_recv(b.sync, &strobe, NULL));

  GO(nb_sender, &b, b.c, b.sync);
  if (buffer > 0)
    ASSERT_OK(tt_chan_recv(b.sync, &strobe, NULL));
  else
    tt_test_await_reason(TT_WAIT_CHAN_SEND, 1);
  memset(buf, 0, sizeof buf);
  ASSERT_OK(nb_try_recv(b.c, buf, &ok, by_select));
  ASSERT(ok);
  ASSERT(memcmp(buf, give, size) == 0);
  if (buffer == 0)
    ASSERT_OK(tt_chan_recv(b.sync, &strobe, NULL));

  ASSERT_OK(tt_chan_release(b.c));
  ASSERT_OK(tt_chan_release(b.sync));
  await_quiet(live);
}

struct gostr {
  const char *p;
  size_t n;
};

static int nonblock_main(void *p) {
  static const char hello[] = "hello", again[] = "hello again";
  const int32_t i32[2] = {123, 234};
  const int64_t i64[2] = {123456, 234567};
  const bool bb[2] = {true, true};
  const struct gostr s[2] = {{hello, 5}, {again, 11}};
  char big[2][100] = {{0}};
  memcpy(big[0], hello, sizeof hello);
  memcpy(big[1], again, sizeof again);
  for (int by_select = 0; by_select < 2; by_select++) {
    for (int buffer = 0; buffer < 2; buffer++) {
      nb_one(sizeof(int32_t), buffer, by_select, &i32[0], &i32[1]);
      nb_one(sizeof(int64_t), buffer, by_select, &i64[0], &i64[1]);
      nb_one(sizeof(bool), buffer, by_select, &bb[0], &bb[1]);
      nb_one(sizeof(struct gostr), buffer, by_select, &s[0], &s[1]);
      nb_one(sizeof big[0], buffer, by_select, big[0], big[1]);
    }
  }
  return 0;
}

TEST(chan_go_nonblock) { tt_test_run(nonblock_main, NULL, 2); }

/* ---- doubleselect.go ------------------------------------------------------------------------- */
/* A select must never run two of its cases: two senders each send a counter through a select of
 * four send cases (on four channels), four muxes forward each channel onto one, and the receiver
 * checks that every value arrives exactly once (a value sent by two cases would arrive twice).
 * The senders' channels are closed when both are done, the mux channel when the muxes are. */

struct ds {
  tt_chan *c[4], *cmux, *done;
  int64_t n;
  tt_wg senders;
};

struct ds_sender {
  struct ds *d;
  int64_t base;
};

static void ds_send(void *p) {
  struct ds_sender *s = p;
  struct ds *d = s->d;
  for (int64_t i = 0; i < d->n; i++) {
    int64_t v = s->base + i;
    tt_select_case cs[4] = {TT_CASE_SEND(d->c[0], &v), TT_CASE_SEND(d->c[1], &v),
                            TT_CASE_SEND(d->c[2], &v), TT_CASE_SEND(d->c[3], &v)};
    int r = tt_select(cs, 4);
    ASSERT(r >= 0 && r < 4);
    ASSERT_EQ(cs[r].err, 0);
  }
  tt_wg_done(&d->senders);
}

static void ds_close_inputs(void *p) {
  struct ds *d = p;
  ASSERT_OK(tt_wg_wait(&d->senders));
  for (int i = 0; i < 4; i++)
    ASSERT_OK(tt_chan_close(d->c[i]));
}

struct ds_mux {
  struct ds *d;
  tt_chan *in;
};

static void ds_mux(void *p) {
  struct ds_mux *m = p;
  int64_t v;
  while (tt_chan_recv(m->in, &v, NULL) == 0)
    ASSERT_OK(tt_chan_send(m->d->cmux, &v));
  ASSERT_OK(tt_chan_send(m->d->done, NULL));
}

static void ds_close_mux(void *p) {
  struct ds *d = p;
  for (int i = 0; i < 4; i++)
    ASSERT_OK(tt_chan_recv(d->done, NULL, NULL));
  ASSERT_OK(tt_chan_close(d->cmux));
}

static int doubleselect_main(void *p) {
  int64_t live = tt__chan_count_live();
  static struct ds d;
  static struct ds_sender s[2];
  static struct ds_mux m[4];
  d.n = SCALED(100000, 500);
  for (int i = 0; i < 4; i++)
    d.c[i] = mk(sizeof(int64_t), 0);
  d.cmux = mk(sizeof(int64_t), 0);
  d.done = mk(0, 0);
  tt_wg_init(&d.senders);
  tt_wg_add(&d.senders, 2);
  for (int i = 0; i < 2; i++) {
    s[i] = (struct ds_sender){&d, i * d.n};
    GO(ds_send, &s[i], d.c[0], d.c[1], d.c[2], d.c[3]);
  }
  GO(ds_close_inputs, &d, d.c[0], d.c[1], d.c[2], d.c[3]);
  for (int i = 0; i < 4; i++) {
    m[i] = (struct ds_mux){&d, d.c[i]};
    GO(ds_mux, &m[i], d.c[i], d.cmux, d.done);
  }
  GO(ds_close_mux, &d, d.done, d.cmux);
  for (int i = 0; i < 4; i++)
    ASSERT_OK(tt_chan_release(d.c[i]));
  ASSERT_OK(tt_chan_release(d.done));
  /* The receiver. */
  unsigned char *seen = calloc((size_t)(2 * d.n), 1);
  ASSERT(seen != NULL);
  int64_t v, got = 0;
  while (tt_chan_recv(d.cmux, &v, NULL) == 0) {
    ASSERT(v >= 0 && v < 2 * d.n);
    if (seen[v])
      tt_test_fail(__FILE__, __LINE__, "got duplicate value: %" PRId64, v);
    seen[v] = 1;
    got++;
  }
  ASSERT_EQ(got, 2 * d.n);
  free(seen);
  ASSERT_OK(tt_chan_release(d.cmux));
  await_quiet(live);
  return 0;
}

TEST(chan_go_doubleselect) { tt_test_run(doubleselect_main, NULL, 2); }

/* ---- fifo.go --------------------------------------------------------------------------------- */
/* Channels are FIFOs. Asynchronous: N values sent into a buffered channel come out in order.
 * Synchronous: a daisy chain of coroutines, each allowed to receive from the unbuffered channel
 * only after the one before it did, receives 0, 1, 2, ... as they were sent (Go's N is 10; this
 * also runs a longer chain). */

struct fifo_link {
  tt_chan *ch, *in, *out;
  int val;
};

static void fifo_chain(void *p) {
  struct fifo_link l = *(struct fifo_link *)p;
  free(p);
  int v;
  ASSERT_OK(tt_chan_recv(l.in, &v, NULL));
  ASSERT_OK(tt_chan_recv(l.ch, &v, NULL));
  if (v != l.val)
    tt_test_fail(__FILE__, __LINE__, "link %d received %d", l.val, v);
  ASSERT_OK(tt_chan_send_val(l.out, int, 1));
}

static void synch_fifo(int n) {
  tt_chan *ch = mk(sizeof(int), 0), *start = mk(sizeof(int), 0), *in = start;
  for (int i = 0; i < n; i++) {
    tt_chan *out = mk(sizeof(int), 0);
    struct fifo_link *l = malloc(sizeof *l);
    ASSERT(l != NULL);
    *l = (struct fifo_link){ch, in, out, i};
    GO(fifo_chain, l, ch, in, out);
    if (in != start)
      ASSERT_OK(tt_chan_release(in));
    in = out;
  }
  ASSERT_OK(tt_chan_send_val(start, int, 0));
  ASSERT_OK(tt_chan_release(start));
  for (int i = 0; i < n; i++)
    ASSERT_OK(tt_chan_send(ch, &i));
  int v;
  ASSERT_OK(tt_chan_recv(in, &v, NULL));
  ASSERT_OK(tt_chan_release(in));
  ASSERT_OK(tt_chan_release(ch));
}

static int fifo_main(void *p) {
  int64_t live = tt__chan_count_live();
  enum { N = 10 };
  tt_chan *ch = mk(sizeof(int), N);
  for (int i = 0; i < N; i++)
    ASSERT_OK(tt_chan_send(ch, &i));
  for (int i = 0; i < N; i++) {
    int v;
    ASSERT_OK(tt_chan_recv(ch, &v, NULL));
    if (v != i)
      tt_test_fail(__FILE__, __LINE__, "bad receive: %d for %d", v, i);
  }
  ASSERT_OK(tt_chan_release(ch));
  synch_fifo(N);
  synch_fifo((int)SCALED(2000, N));
  await_quiet(live);
  return 0;
}

TEST(chan_go_fifo) { tt_test_run(fifo_main, NULL, 0); }

/* ---- goroutines.go --------------------------------------------------------------------------- */
/* Many coroutines threaded together (Go: 10,000), each passing what it receives on its right to
 * its left; all are alive and waiting at once; the value sent at the right end arrives at the
 * left end, and everything is torn down cleanly. */

struct gr_link {
  tt_chan *left, *right;
};

static void gr_f(void *p) {
  struct gr_link l = *(struct gr_link *)p;
  free(p);
  int v;
  ASSERT_OK(tt_chan_recv(l.right, &v, NULL));
  ASSERT_OK(tt_chan_send(l.left, &v));
}

static void gr_last(void *p) { ASSERT_OK(tt_chan_send_val(p, int, 1)); }

static int goroutines_main(void *p) {
  int64_t live = tt__chan_count_live();
  int64_t n = SCALED(10000, 100);
  tt_chan *leftmost = mk(sizeof(int), 0), *left = leftmost, *right = leftmost;
  for (int64_t i = 0; i < n; i++) {
    right = mk(sizeof(int), 0);
    struct gr_link *l = malloc(sizeof *l);
    ASSERT(l != NULL);
    *l = (struct gr_link){left, right};
    go_stack(gr_f, l, CHANS_(left, right), 2, 64 * 1024);
    if (left != leftmost)
      ASSERT_OK(tt_chan_release(left));
    left = right;
  }
  tt_test_await_reason(TT_WAIT_CHAN_RECV, n); /* all threaded together, waiting */
  ASSERT_EQ(tt_num_coroutines(), n + 1);
  GO(gr_last, right, right);
  ASSERT_OK(tt_chan_release(right));
  int v = 0;
  ASSERT_OK(tt_chan_recv(leftmost, &v, NULL));
  ASSERT_EQ(v, 1);
  ASSERT_OK(tt_chan_release(leftmost));
  await_quiet(live);
  return 0;
}

TEST(chan_go_goroutines) { tt_test_run(goroutines_main, NULL, 0); }

/* ---- zerosize.go ----------------------------------------------------------------------------- */
/* Channels of a zero-size element (Go's chan struct{} and chan [0]byte), unbuffered and buffered,
 * can be made; and used: sends, receives and selects with no value, len and cap, close, and a
 * capacity far beyond any buffer (no element takes memory). */

static void zs_signal(void *p) {
  tt_chan *ch = p;
  ASSERT_OK(tt_chan_send(ch, NULL));
  tt_select_case cs[1] = {TT_CASE_SEND(ch, NULL)};
  ASSERT_EQ(tt_select(cs, 1), 0);
}

static int zerosize_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *u = mk(0, 0), *b = mk(0, 1), *u2 = mk(0, 0), *b2 = mk(0, 1);
  ASSERT_EQ(tt_chan_cap(u), 0);
  ASSERT_EQ(tt_chan_cap(b), 1);
  GO(zs_signal, u, u);
  bool ok = false;
  ASSERT_OK(tt_chan_recv(u, NULL, &ok));
  ASSERT(ok);
  tt_select_case cs[2] = {TT_CASE_RECV(u, NULL), TT_CASE_RECV(u2, NULL)};
  ASSERT_EQ(tt_select(cs, 2), 0);
  ASSERT(cs[0].ok);
  ASSERT_OK(tt_chan_send(b, NULL));
  ASSERT_EQ(tt_chan_len(b), 1);
  ASSERT_ERR(tt_chan_try_send(b, NULL), TT_EAGAIN);
  cs[0] = TT_CASE_SEND(b2, NULL);
  cs[1] = TT_CASE_SEND(b, NULL);
  ASSERT_EQ(tt_select_try(cs, 2), 0);
  ASSERT_OK(tt_chan_close(b));
  ASSERT_OK(tt_chan_recv(b, NULL, &ok));
  ASSERT(ok);
  ASSERT_ERR(tt_chan_recv(b, NULL, &ok), TT_ECLOSED);
  ASSERT(!ok);
  tt_chan *huge = NULL;
  ASSERT_OK(tt_chan_make_opt(&huge, 0, (size_t)1 << 30, NULL));
  ASSERT_EQ(tt_chan_cap(huge), (int64_t)1 << 30);
  for (int i = 0; i < 1000; i++)
    ASSERT_OK(tt_chan_try_send(huge, NULL));
  ASSERT_EQ(tt_chan_len(huge), 1000);
  tt_chan *all[] = {u, b, u2, b2, huge};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    ASSERT_OK(tt_chan_release(all[i]));
  await_quiet(live);
  return 0;
}

TEST(chan_go_zerosize) { tt_test_run(zerosize_main, NULL, 2); }

/* ---- perm.go --------------------------------------------------------------------------------- */
/* Go's perm.go checks channel direction errors at compile time; C has no channel directions. The
 * runtime errors tether returns instead: sending on or closing a closed channel is TT_ECLOSED (Go
 * panics), closing NULL is TT_EINVAL (Go panics on close(nil)), and a coroutine holding no
 * reference to a tracked channel can do nothing with it (TT_EPERM, and nothing happens to the
 * channel), until it receives one through a channel; untracked channels need none. */

struct perm {
  tt_chan *tracked, *untracked, *via, *done;
};

static void perm_noop(void *p) {}

static void perm_noref(void *p) {
  struct perm *q = p;
  tt_chan *ch = q->tracked;
  int v = 1;
  bool ok = true;
  ASSERT_ERR(tt_chan_send(ch, &v), TT_EPERM);
  ASSERT_ERR(tt_chan_try_send(ch, &v), TT_EPERM);
  ASSERT_ERR(tt_chan_send_dl(ch, &v, tt_now() + TT_SEC), TT_EPERM);
  v = 5;
  ASSERT_ERR(tt_chan_recv(ch, &v, &ok), TT_EPERM);
  ASSERT_ERR(tt_chan_try_recv(ch, &v, &ok), TT_EPERM);
  ASSERT_ERR(tt_chan_recv_dl(ch, &v, &ok, tt_now() + TT_SEC), TT_EPERM);
  ASSERT_EQ(v, 5); /* nothing received */
  ASSERT_ERR(tt_chan_close(ch), TT_EPERM);
  ASSERT_EQ(tt_chan_len(ch), TT_EPERM);
  ASSERT_EQ(tt_chan_cap(ch), TT_EPERM);
  ASSERT_ERR(tt_chan_retain(ch), TT_EPERM);
  ASSERT_ERR(tt_chan_release(ch), TT_EPERM);
  ASSERT_ERR(tt_chan_send_ref(q->via, ch), TT_EPERM);
  /* A select with such a case fails as a whole, even beside a ready case. */
  tt_select_case cs[2] = {TT_CASE_RECV(q->untracked, &v), TT_CASE_RECV(ch, &v)};
  ASSERT_ERR(tt_select(cs, 2), TT_EPERM);
  ASSERT_ERR(tt_select_try(cs, 2), TT_EPERM);
  ASSERT_ERR(tt_select_dl(cs, 2, tt_now() + TT_SEC), TT_EPERM);
  cs[1] = TT_CASE_SEND(ch, &v);
  ASSERT_ERR(tt_select_try(cs, 2), TT_EPERM);
  ASSERT_EQ(v, 5);
  /* Nor can it share the channel with a child. */
  tt_go_opts o = {.share = &ch, .nshare = 1};
  ASSERT_ERR(tt_go_opt(perm_noop, NULL, &o, NULL), TT_EPERM);
  /* The untracked channel needs no reference: its value is still there. */
  ASSERT_OK(tt_chan_try_recv(q->untracked, &v, &ok));
  ASSERT_EQ(v, 7);
  /* A reference received through a channel makes it a holder. */
  ASSERT_OK(tt_chan_send(q->done, NULL));
  tt_chan *got = NULL;
  ASSERT_OK(tt_chan_recv(q->via, &got, NULL));
  ASSERT_PTR_EQ(got, ch);
  ASSERT_OK(tt_chan_recv(ch, &v, &ok));
  ASSERT_EQ(v, 9);
  ASSERT_OK(tt_chan_release(ch));
  ASSERT_OK(tt_chan_send(q->done, NULL));
}

static int perm_main(void *p) {
  int64_t live = tt__chan_count_live();
  static struct perm q;
  q.tracked = mk(sizeof(int), 1);
  q.untracked = mk_untracked(sizeof(int), 1);
  q.via = mk(sizeof(tt_chan *), 1);
  q.done = mk(0, 0);
  ASSERT_OK(tt_chan_send_val(q.untracked, int, 7));
  GO(perm_noref, &q, q.via, q.done);
  /* After its failed attempts, hand it a reference (ours stays: retain one to send). */
  ASSERT_OK(tt_chan_recv(q.done, NULL, NULL));
  ASSERT_EQ(tt_chan_len(q.tracked), 0);
  ASSERT_EQ(tt_chan_len(q.untracked), 0);
  ASSERT_OK(tt_chan_send_val(q.tracked, int, 9));
  ASSERT_OK(tt_chan_retain(q.tracked));
  ASSERT_OK(tt_chan_send_ref(q.via, q.tracked));
  ASSERT_OK(tt_chan_recv(q.done, NULL, NULL));
  ASSERT_EQ(tt_chan_len(q.tracked), 0);

  /* Closed channels and NULL. */
  tt_chan *ch = q.tracked;
  ASSERT_OK(tt_chan_close(ch));
  ASSERT_ERR(tt_chan_close(ch), TT_ECLOSED);
  ASSERT_ERR(tt_chan_send_val(ch, int, 1), TT_ECLOSED);
  ASSERT_ERR(tt_chan_try_send(ch, &(int){1}), TT_ECLOSED);
  ASSERT_ERR(tt_chan_send_dl(ch, &(int){1}, tt_now() + TT_SEC), TT_ECLOSED);
  tt_select_case cs[1] = {TT_CASE_SEND(ch, &(int){1})};
  ASSERT_EQ(tt_select(cs, 1), 0);
  ASSERT_EQ(cs[0].err, TT_ECLOSED);
  ASSERT_ERR(tt_chan_close(NULL), TT_EINVAL);
  ASSERT_OK(tt_chan_close(q.untracked));
  ASSERT_ERR(tt_chan_close(q.untracked), TT_ECLOSED);

  ASSERT_OK(tt_chan_release(q.tracked));
  ASSERT_OK(tt_chan_release(q.untracked));
  ASSERT_OK(tt_chan_release(q.via));
  ASSERT_OK(tt_chan_release(q.done));
  await_quiet(live);
  return 0;
}

TEST(chan_go_perm) { tt_test_run(perm_main, NULL, 2); }

/* ---- sendstmt.go ----------------------------------------------------------------------------- */
/* A channel of channels: `case <-cc <- 2` sends 2 on the channel received from cc, in a select
 * with a default that must not be taken. In tether the channel travels with a reference
 * (tt_chan_send_ref), and the receiver may use it. And `c <- false || true` sends true. */

static int sendstmt_main(void *p) {
  int64_t live = tt__chan_count_live();
  tt_chan *cc = mk(sizeof(tt_chan *), 1), *c = mk(sizeof(int), 1);
  ASSERT_OK(tt_chan_retain(c));
  ASSERT_OK(tt_chan_send_ref(cc, c));
  tt_chan *got = NULL;
  ASSERT_OK(tt_chan_recv(cc, &got, NULL));
  ASSERT_PTR_EQ(got, c);
  int two = 2;
  tt_select_case cs[1] = {TT_CASE_SEND(got, &two)};
  ASSERT_EQ(tt_select_try(cs, 1), 0); /* Go: panic("nonblock") on the default */
  ASSERT_OK(tt_chan_release(got));
  int v = 0;
  ASSERT_OK(tt_chan_recv(c, &v, NULL));
  ASSERT_EQ(v, 2);
  tt_chan *cb = mk(sizeof(bool), 1);
  ASSERT_OK(tt_chan_send_val(cb, bool, false || true));
  bool b = false;
  ASSERT_OK(tt_chan_recv(cb, &b, NULL));
  ASSERT(b);
  ASSERT_OK(tt_chan_release(cc));
  ASSERT_OK(tt_chan_release(c));
  ASSERT_OK(tt_chan_release(cb));
  ASSERT_EQ(tt__chan_count_live(), live);
  return 0;
}

TEST(chan_go_sendstmt) { tt_test_run(sendstmt_main, NULL, 1); }
