/* SPDX-License-Identifier: MIT */
/* tether: Go's concurrency model for C, built so that coroutine leaks cannot hide.
 * This is the one header a program includes. */
#ifndef TETHER_H
#define TETHER_H

#include "tether/common.h"
#include "tether/version.h"
#include "tether/error.h"
#include "tether/coro.h"
#include "tether/time.h"
#include "tether/sync.h"
#include "tether/blocking.h"
#include "tether/chan.h"
#include "tether/ctx.h"
#include "tether/group.h"
#include "tether/diag.h"
#include "tether/signal.h"
#include "tether/leak.h"
#include "tether/net.h"
#include "tether/debug.h"
#include "tether/watchdog.h"
#include "tether/trace.h"

#endif
