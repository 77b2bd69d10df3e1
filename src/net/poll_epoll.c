/* SPDX-License-Identifier: MIT */
/* The epoll backend of the poller (src/net/poll.h). One epoll instance per worker, and an eventfd
 * in it for wake-ups. The eventfd is registered edge-triggered and never read: every write to it
 * is a fresh edge, so a wake costs one write(2) and no read. (Its counter would have to reach
 * 2^64 - 2 for a write to fail.) */
#include "net/poll.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct tt__poller {
  int epfd;
  int wakefd;
};

#define WAKE_TAG UINT64_MAX /* the eventfd's epoll data */
#define BATCH 128           /* events fetched per call */

int tt__pb_create(tt__worker *w) {
  tt__poller *p = tt__malloc(sizeof *p);
  if (p == NULL)
    return -ENOMEM;
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) {
    int e = errno;
    free(p);
    return -e;
  }
  p->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = WAKE_TAG};
  if (p->wakefd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->wakefd, &ev) != 0) {
    int e = errno;
    if (p->wakefd >= 0)
      close(p->wakefd);
    close(p->epfd);
    free(p);
    return -e;
  }
  /* release: the descriptors are set up before anyone who sees the pointer uses them. */
  atomic_store_explicit(&w->poller, p, memory_order_release);
  return 0;
}

void tt__pb_destroy(tt__worker *w) {
  tt__poller *p = atomic_load_explicit(&w->poller, memory_order_acquire);
  if (p == NULL)
    return;
  close(p->wakefd);
  close(p->epfd);
  free(p);
  atomic_store_explicit(&w->poller, NULL, memory_order_relaxed);
}

static uint32_t ep_events(bool oneshot, int events) {
  if (!oneshot)
    return EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  uint32_t e = EPOLLONESHOT;
  if (events & TT__POLL_READ)
    e |= EPOLLIN | EPOLLRDHUP;
  if (events & TT__POLL_WRITE)
    e |= EPOLLOUT;
  return e;
}

int tt__pb_add(tt__worker *w, int fd, uint32_t index, uint32_t gen, bool oneshot, int events) {
  tt__poller *p = atomic_load_explicit(&w->poller, memory_order_acquire);
  struct epoll_event ev = {.events = ep_events(oneshot, events),
                           .data.u64 = ((uint64_t)gen << 32) | index};
  return epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

void tt__pb_del(tt__worker *w, int fd) {
  tt__poller *p = atomic_load_explicit(&w->poller, memory_order_acquire);
  struct epoll_event ev = {0}; /* ignored, but kernels before 2.6.9 wanted one */
  (void)epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, &ev);
}

/* epoll_pwait2 takes a timespec (ns); it is Linux 5.11's. Without it (ENOSYS: an older kernel, or
 * qemu-user) the timeout is rounded up to milliseconds, so a sleep never ends early. */
static _Atomic int have_pwait2 = 1;

static int ep_wait(tt__poller *p, struct epoll_event *evs, int64_t timeout_ns) {
  if (timeout_ns <= 0)
    return epoll_wait(p->epfd, evs, BATCH, timeout_ns < 0 ? -1 : 0);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
  /* relaxed: a flag that only ever goes from 1 to 0; a stale 1 costs one ENOSYS. */
  if (atomic_load_explicit(&have_pwait2, memory_order_relaxed)) {
    struct timespec ts = {.tv_sec = timeout_ns / TT_SEC, .tv_nsec = timeout_ns % TT_SEC};
    int n = epoll_pwait2(p->epfd, evs, BATCH, &ts, NULL);
    if (n >= 0 || errno != ENOSYS)
      return n;
    atomic_store_explicit(&have_pwait2, 0, memory_order_relaxed);
  }
#endif
  int64_t ms = (timeout_ns + TT_MSEC - 1) / TT_MSEC;
  return epoll_wait(p->epfd, evs, BATCH, ms > INT32_MAX ? INT32_MAX : (int)ms);
}

int tt__pb_poll(tt__worker *w, int64_t timeout_ns) {
  tt__poller *p = atomic_load_explicit(&w->poller, memory_order_acquire);
  if (p == NULL)
    return 0;
  struct epoll_event evs[BATCH];
  int n = ep_wait(p, evs, timeout_ns);
  if (n <= 0)
    return 0; /* EINTR (a dump's signal) or nothing: the caller looks again */
  int got = 0;
  for (int i = 0; i < n; i++) {
    uint64_t tag = evs[i].data.u64;
    if (tag == WAKE_TAG)
      continue;
    uint32_t e = evs[i].events;
    int events = 0;
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
      events |= TT__POLL_READ;
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR))
      events |= TT__POLL_WRITE;
    got++;
    tt__pollfd_ready((uint32_t)tag, (uint32_t)(tag >> 32), events);
  }
  return got;
}

void tt__pb_wake(tt__worker *w) {
  tt__poller *p = atomic_load_explicit(&w->poller, memory_order_acquire);
  uint64_t one = 1;
  if (p != NULL) {
    ssize_t r = write(p->wakefd, &one, sizeof one);
    (void)r; /* EAGAIN only at a counter of 2^64 - 2 */
  }
}
