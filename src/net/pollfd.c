/* SPDX-License-Identifier: MIT */
/* Poll descriptors: waiting on file descriptors, the platform-independent half of the poller
 * (src/net/poll.h), and tt_fd_wait. */
#include "net/poll.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "tether/net.h"

/* ---- The pool ------------------------------------------------------------------------------ */

/* Chunks of descriptors, never freed: an index names the same memory for the life of the process
 * (see poll.h). 4096 chunks of 256: a million descriptors waited on at once. */
#define CHUNK 256
#define NCHUNKS 4096

static tt__lock pool_lock;
static tt__pollfd *_Atomic chunks[NCHUNKS];
static uint32_t nchunks; /* under pool_lock */
static tt__pollfd *pool_free;

static tt__pollfd *pd_at(uint32_t index) {
  if (index / CHUNK >= NCHUNKS)
    return NULL;
  /* acquire: pairs with the release that published the chunk. */
  tt__pollfd *c = atomic_load_explicit(&chunks[index / CHUNK], memory_order_acquire);
  return c ? &c[index % CHUNK] : NULL;
}

tt__pollfd *tt__pollfd_get(int fd) {
  tt__lock_acquire(&pool_lock);
  tt__pollfd *pd = pool_free;
  if (pd == NULL && nchunks < NCHUNKS) {
    tt__pollfd *c = tt__calloc(CHUNK, sizeof *c);
    if (c != NULL) {
      for (uint32_t i = 0; i < CHUNK; i++) {
        c[i].index = nchunks * CHUNK + i;
        c[i].fnext = i + 1 < CHUNK ? &c[i + 1] : NULL;
      }
      atomic_store_explicit(&chunks[nchunks], c, memory_order_release);
      nchunks++;
      pd = c;
    }
  }
  if (pd != NULL)
    pool_free = pd->fnext;
  tt__lock_release(&pool_lock);
  if (pd == NULL)
    return NULL;
  /* No event can reach pd's fields now (its generation was bumped when it was released, and
   * tt__pollfd_ready compares under the lock), but take the lock anyway: a stale event may be
   * comparing right now. */
  tt__lock_acquire(&pd->lock);
  pd->fd = fd;
  pd->closing = pd->armed = false;
  pd->ready[0] = pd->ready[1] = false;
  pd->revents = 0;
  pd->oneshot = false;
  pd->w = NULL;
  pd->q[0] = pd->q[1] = NULL;
  pd->fnext = NULL;
  tt__lock_release(&pd->lock);
  return pd;
}

void tt__pollfd_put(tt__pollfd *pd) {
  tt__lock_acquire(&pd->lock);
  TT_ASSERT(pd->q[0] == NULL && pd->q[1] == NULL);
  bool deregister = pd->armed && pd->run_id == tt__rt.run_id &&
                    atomic_load_explicit(&tt__rt.state, memory_order_acquire) != 0;
  tt__worker *w = pd->w;
  pd->gen++; /* events of this life are stale from now on */
  pd->armed = false;
  tt__lock_release(&pd->lock);
  if (deregister)
    tt__pb_del(w, pd->fd);
  tt__lock_acquire(&pool_lock);
  pd->fnext = pool_free;
  pool_free = pd;
  tt__lock_release(&pool_lock);
}

/* ---- Registering -------------------------------------------------------------------------- */

static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

/* w's poller, created on first use. */
static int poller_of(tt__worker *w) {
  if (atomic_load_explicit(&w->poller, memory_order_acquire) != NULL)
    return 0;
  pthread_mutex_lock(&create_lock);
  int r = 0;
  if (atomic_load_explicit(&w->poller, memory_order_acquire) == NULL)
    r = tt__pb_create(w);
  pthread_mutex_unlock(&create_lock);
  return r;
}

int tt__pollfd_arm(tt__pollfd *pd, bool oneshot, int events) {
  tt__worker *w = tt__tls_worker;
  if (w == NULL) {
    if (atomic_load_explicit(&tt__rt.state, memory_order_acquire) == 0)
      return TT_ENOTRUNNING;
    w = &tt__rt.workers[0];
  }
  int r = poller_of(w);
  if (r != 0)
    return r;
  tt__lock_acquire(&pd->lock);
  pd->w = w;
  pd->run_id = tt__rt.run_id;
  uint32_t gen = pd->gen;
  tt__lock_release(&pd->lock);
  r = tt__pb_add(w, pd->fd, pd->index, gen, oneshot, events);
  if (r == 0) {
    tt__lock_acquire(&pd->lock);
    pd->armed = true;
    tt__lock_release(&pd->lock);
  }
  return r;
}

/* ---- Waiting ----------------------------------------------------------------------------- */

static void q_push(tt__waiter **q, tt__waiter *wt) {
  wt->prev = NULL;
  wt->next = *q;
  if (*q)
    (*q)->prev = wt;
  *q = wt;
}

static void q_unlink(tt__waiter **q, tt__waiter *wt) {
  if (wt->prev)
    wt->prev->next = wt->next;
  else
    *q = wt->next;
  if (wt->next)
    wt->next->prev = wt->prev;
  wt->next = wt->prev = NULL;
}

int tt__pollfd_wait(tt__pollfd *pd, int dir, int64_t deadline) {
  int d = dir == TT__POLL_WRITE;
  tt__coro *co = tt__self();
  int r = tt__block_check(co);
  if (r != 0)
    return r;
  tt__lock_acquire(&pd->lock);
  if (pd->closing) {
    tt__lock_release(&pd->lock);
    return TT_ECLOSED;
  }
  if (pd->oneshot)
    d = 0; /* one queue: any event ends the wait */
  if (pd->oneshot ? pd->revents != 0 : pd->ready[d]) {
    /* An edge came since the caller's last try: try again. */
    pd->ready[d] = false;
    tt__lock_release(&pd->lock);
    return 0;
  }
  tt__waiter wt;
  tt__waiter_init(&wt, co);
  q_push(&pd->q[d], &wt);
  tt__worker *w = pd->w;
  /* seq_cst: ordered before the load of w's sleeping word in tt__worker_wake, against w's store
   * of it before its load of the count (see poll.h). */
  atomic_fetch_add_explicit(&w->io_waiters, 1, memory_order_seq_cst);
  if (w != tt__tls_worker)
    tt__worker_wake(w); /* asleep on its futex: it must sleep in its poller instead */
  r = tt__wait(&wt, TT_WAIT_IO_WAIT, pd, deadline, &pd->lock);
  if (tt__wait_self_result(r)) {
    tt__lock_acquire(&pd->lock);
    q_unlink(&pd->q[d], &wt);
    atomic_fetch_sub_explicit(&w->io_waiters, 1, memory_order_relaxed);
    tt__lock_release(&pd->lock);
  }
  return r;
}

/* Claims every waiter of q with result, unlinking them onto *woken (through next). Under lock. */
static int claim_all(tt__pollfd *pd, int d, int result, tt__waiter **woken) {
  int n = 0;
  tt__waiter *wt = pd->q[d];
  while (wt != NULL) {
    tt__waiter *nx = wt->next;
    if (tt__wake_claim(wt, result)) {
      q_unlink(&pd->q[d], wt);
      wt->next = *woken;
      *woken = wt;
      n++;
    }
    /* else a timer or a cancellation won it: it takes itself off */
    wt = nx;
  }
  return n;
}

static void commit_all(tt__waiter *wt) {
  while (wt != NULL) {
    tt__waiter *nx = wt->next;
    tt__wake_commit(wt); /* our last touch of wt */
    wt = nx;
  }
}

int tt__pollfd_ready(uint32_t index, uint32_t gen, int events) {
  tt__pollfd *pd = pd_at(index);
  if (pd == NULL)
    return 0;
  tt__waiter *woken = NULL;
  int n = 0;
  tt__lock_acquire(&pd->lock);
  if (pd->gen != gen || pd->closing) {
    tt__lock_release(&pd->lock);
    return 0;
  }
  pd->revents |= (uint8_t)events;
  for (int d = 0; d < 2; d++) {
    if (pd->oneshot ? d != 0 : !(events & (d ? TT__POLL_WRITE : TT__POLL_READ)))
      continue;
    int k = claim_all(pd, d, 0, &woken);
    /* Nobody woken: remember the edge for the next wait (edge-triggered: none will come again). */
    pd->ready[d] = k == 0;
    n += k;
  }
  tt__worker *w = pd->w;
  tt__lock_release(&pd->lock);
  if (n)
    atomic_fetch_sub_explicit(&w->io_waiters, (uint32_t)n, memory_order_relaxed);
  commit_all(woken);
  return n;
}

void tt__pollfd_close(tt__pollfd *pd) {
  tt__waiter *woken = NULL;
  tt__lock_acquire(&pd->lock);
  pd->closing = true;
  int n = claim_all(pd, 0, TT_ECLOSED, &woken) + claim_all(pd, 1, TT_ECLOSED, &woken);
  tt__worker *w = pd->w;
  tt__lock_release(&pd->lock);
  if (n)
    atomic_fetch_sub_explicit(&w->io_waiters, (uint32_t)n, memory_order_relaxed);
  commit_all(woken);
}

/* ---- Scheduler hooks ---------------------------------------------------------------------- */

int tt__poller_poll_now(tt__worker *w) {
  if (atomic_load_explicit(&w->io_waiters, memory_order_relaxed) == 0)
    return 0;
  int n = tt__pb_poll(w, 0);
  tt__fig_bump(&w->fig_polls, 1);
  tt__fig_bump(&w->fig_poll_events, (uint64_t)n);
  return n;
}

void tt__poller_sleep(tt__worker *w, int64_t until) {
  int64_t timeout = -1;
  if (until >= 0) {
    timeout = until - tt__clock();
    if (timeout <= 0)
      timeout = 0;
  }
  int n = tt__pb_poll(w, timeout);
  tt__fig_bump(&w->fig_polls, 1);
  tt__fig_bump(&w->fig_poll_events, (uint64_t)n);
}

/* ---- tt_fd_wait ---------------------------------------------------------------------------- */

int tt_fd_wait(int fd, int events, int64_t deadline) {
  if ((events & ~(TT_FD_READ | TT_FD_WRITE)) != 0 || events == 0)
    return TT_EINVAL;
  if (fd < 0)
    return TT_EBADF;
  int r = tt__block_check(tt__self());
  if (r != 0)
    return r;
  int pev =
      ((events & TT_FD_READ) ? TT__POLL_READ : 0) | ((events & TT_FD_WRITE) ? TT__POLL_WRITE : 0);
  tt__pollfd *pd = tt__pollfd_get(fd);
  if (pd == NULL)
    return TT_ENOMEM;
  pd->oneshot = true; /* nobody else knows pd yet */
  /* Level-triggered and oneshot, on a descriptor of its own: the caller may close fd as soon as we
   * return, and another waiter may have registered fd with the same poller (then a duplicate,
   * which epoll tells apart, stands in for it). */
  int dupfd = -1;
  r = tt__pollfd_arm(pd, true, pev);
  if (r == -EEXIST) {
    dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dupfd < 0) {
      r = -errno;
    } else {
      pd->fd = dupfd;
      r = tt__pollfd_arm(pd, true, pev);
    }
  }
  int result;
  if (r == -EPERM) {
    result = events; /* a regular file or the like: always ready, as poll(2) says */
  } else if (r != 0) {
    result = r;
  } else {
    result = tt__pollfd_wait(pd, TT__POLL_READ, deadline); /* oneshot: any event ends it */
    if (result == 0) {
      tt__lock_acquire(&pd->lock);
      int got = pd->revents;
      tt__lock_release(&pd->lock);
      result =
          (((got & TT__POLL_READ) ? TT_FD_READ : 0) | ((got & TT__POLL_WRITE) ? TT_FD_WRITE : 0)) &
          events;
      if (result == 0)
        result = events; /* an error or hang-up on a direction not asked for */
    }
  }
  tt__pollfd_put(pd);
  if (dupfd >= 0)
    close(dupfd);
  return result;
}
