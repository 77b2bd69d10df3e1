/* SPDX-License-Identifier: MIT */
/* The epoll backend of the poller contract (src/net/poll.h). */
#include "internal.h"

uint32_t tt__poller_waiters(tt__worker *w) {
  (void)w;
  return 0;
}
