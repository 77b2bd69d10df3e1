/* SPDX-License-Identifier: MIT */
/* The poller: how coroutines wait on file descriptors (src/net/pollfd.c, platform-independent) and
 * what a backend provides (src/net/poll_epoll.c; kqueue or io_uring would be others).
 *
 * Each worker has its own poller, created when a descriptor is first registered with it. A
 * descriptor is registered with one poller for its life (a socket: the poller of the worker that
 * made it; a plain thread's: worker 0's), and whoever waits on it, on any worker or a plain
 * thread, queues a tt__waiter on its poll descriptor (tt__pollfd) and parks with wait reason
 * "IO wait". The poller's worker collects readiness and wakes those waiters:
 *   - when it has nothing to run, it sleeps in the poller instead of on its futex (if anyone waits
 *     on its descriptors), so one wait covers timers, I/O and wake-ups from other threads;
 *   - while it is busy, every 64 switches (pick_local) and before it spins for work.
 * A waiter on another worker's descriptor makes that worker sleep in its poller: the waiter count
 * rises before the waiter looks at the worker's sleeping word (seq_cst on both sides), and a
 * worker asleep on its futex is woken to sleep again in the poller.
 *
 * Poll descriptors live in a pool that is never freed (type-stable memory): an event already
 * fetched from the kernel when its descriptor is closed still names a valid tt__pollfd, and its
 * generation (bumped when the descriptor is released) tells it is stale. */
#ifndef TT_NET_POLL_H
#define TT_NET_POLL_H

#include "internal.h"

#define TT__POLL_READ 1  /* readable, hang-up or error */
#define TT__POLL_WRITE 2 /* writable, or error */

typedef struct tt__pollfd {
  tt__lock lock;
  int fd;
  uint32_t index;           /* in the pool */
  uint32_t gen;             /* bumped at each release: events of an earlier life are ignored */
  bool closing;             /* tt__pollfd_close ran: waits fail with TT_ECLOSED */
  bool armed;               /* registered with w's poller */
  bool ready[2];            /* an edge arrived while nobody waited (read, write) */
  bool oneshot;             /* tt_fd_wait's: one queue (q[0]), ended by any event */
  uint8_t revents;          /* TT__POLL_* seen since the last wait began (tt_fd_wait's result) */
  uint64_t run_id;          /* the run whose poller it is registered with */
  tt__worker *w;            /* that poller's worker */
  tt__waiter *q[2];         /* waiters by direction: a list through next/prev (under lock) */
  struct tt__pollfd *fnext; /* pool free list */
} tt__pollfd;

/* ---- The platform-independent half (pollfd.c) ------------------------------------------- */

/* A fresh poll descriptor for fd (not registered yet), or NULL (out of memory). Any thread. */
tt__pollfd *tt__pollfd_get(int fd);
/* Registers pd's descriptor with the poller of the caller's worker (worker 0's for a plain
 * thread), edge-triggered for both directions (oneshot: level, once, for `events`: tt_fd_wait).
 * Returns 0 or a negated errno (-EPERM: a descriptor epoll cannot wait on, -EEXIST: already
 * registered there). The runtime must be running. */
int tt__pollfd_arm(tt__pollfd *pd, bool oneshot, int events);
/* Waits until pd is ready in direction dir (TT__POLL_READ or _WRITE) or an error, the deadline,
 * a cancellation, or tt__pollfd_close. 0: ready (or maybe: retry the call), else TT_ETIMEDOUT,
 * TT_ECANCELED, TT_ECLOSED, TT_ENOMEM. Any coroutine or plain thread. */
int tt__pollfd_wait(tt__pollfd *pd, int dir, int64_t deadline);
/* Wakes every waiter with TT_ECLOSED; later waits fail with it. Any thread. */
void tt__pollfd_close(tt__pollfd *pd);
/* Deregisters (if registered in this run) and returns pd to the pool. The descriptor itself is
 * the caller's to close, after this. Nobody may wait on pd any more. */
void tt__pollfd_put(tt__pollfd *pd);

/* Called by a backend for each event it fetched: the descriptor `index` of generation gen is ready
 * for `events` (TT__POLL_*). Wakes its waiters, or remembers the edge. Returns the number woken.
 * Runs on a worker, with no lock held. */
int tt__pollfd_ready(uint32_t index, uint32_t gen, int events);

/* Scheduler hooks (sched.c). */
/* Polls w's poller without blocking, if anyone waits on it: readies the waiters of ready
 * descriptors. Returns the number woken. w's own thread. */
int tt__poller_poll_now(tt__worker *w);
/* Sleeps in w's poller until an event, tt__poller_wake, or until (absolute tt_now() ns; -1:
 * none). w's own thread, with its sleeping word at 2. */
void tt__poller_sleep(tt__worker *w, int64_t until);

/* ---- A backend (poll_epoll.c) ----------------------------------------------------------- */

typedef struct tt__poller tt__poller;
/* Creates w's poller (once; any thread; serialised by the caller). 0 or a negated errno. */
int tt__pb_create(tt__worker *w);
/* Frees it (at the end of the run; the worker has stopped). */
void tt__pb_destroy(tt__worker *w);
/* Registers fd, its events tagged (index, gen): edge-triggered for both directions, or oneshot
 * (level-triggered, once) for `events`. 0 or a negated errno. Any thread. */
int tt__pb_add(tt__worker *w, int fd, uint32_t index, uint32_t gen, bool oneshot, int events);
/* Deregisters fd. Any thread. */
void tt__pb_del(tt__worker *w, int fd);
/* Fetches events and hands each to tt__pollfd_ready. timeout_ns: 0 does not block, -1 blocks
 * until an event or a wake. Returns the number of events. w's own thread (or any one thread at a
 * time). */
int tt__pb_poll(tt__worker *w, int64_t timeout_ns);
/* Ends a tt__pb_poll blocked on w's poller, from any thread. */
void tt__pb_wake(tt__worker *w);

#endif
