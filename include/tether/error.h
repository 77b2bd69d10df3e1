/* SPDX-License-Identifier: MIT */
/* Error codes: every tether call returns 0 (or a count/id) on success and a negative TT_E* code
 * on failure; tt_strerror() names it. Nothing in tether reports through errno. */
#ifndef TETHER_ERROR_H
#define TETHER_ERROR_H

#include "common.h"

TT_BEGIN_DECLS

/* The one list of error codes (name, value, message). Codes that mean what a POSIX errno means
 * carry the negated Linux value, like libuv; tether's own codes sit below -4000. New codes are
 * only appended. */
#define TT_ERRNO_MAP(XX)                                                                           \
  XX(EPERM, -1, "operation not permitted")                                                         \
  XX(EIO, -5, "input/output error")                                                                \
  XX(EBADF, -9, "bad file descriptor")                                                             \
  XX(EAGAIN, -11, "resource temporarily unavailable")                                              \
  XX(ENOMEM, -12, "out of memory")                                                                 \
  XX(EACCES, -13, "permission denied")                                                             \
  XX(EBUSY, -16, "resource busy")                                                                  \
  XX(EINVAL, -22, "invalid argument")                                                              \
  XX(EMFILE, -24, "too many open files")                                                           \
  XX(EPIPE, -32, "broken pipe")                                                                    \
  XX(EDEADLK, -35, "all coroutines are asleep - deadlock")                                         \
  XX(ENOSYS, -38, "function not implemented")                                                      \
  XX(EAFNOSUPPORT, -97, "address family not supported")                                            \
  XX(EADDRINUSE, -98, "address already in use")                                                    \
  XX(EADDRNOTAVAIL, -99, "cannot assign requested address")                                        \
  XX(ENETUNREACH, -101, "network is unreachable")                                                  \
  XX(ECONNABORTED, -103, "connection aborted")                                                     \
  XX(ECONNRESET, -104, "connection reset by peer")                                                 \
  XX(ENOTCONN, -107, "socket is not connected")                                                    \
  XX(ESHUTDOWN, -108, "runtime shut down")                                                         \
  XX(ETIMEDOUT, -110, "deadline exceeded")                                                         \
  XX(ECONNREFUSED, -111, "connection refused")                                                     \
  XX(EHOSTUNREACH, -113, "no route to host")                                                       \
  XX(ECANCELED, -125, "operation canceled")                                                        \
  XX(ENOTRUNNING, -4001, "runtime not running")                                                    \
  XX(ECLOSED, -4002, "use of a closed channel or connection")                                      \
  XX(ENOTCORO, -4003, "not called from a coroutine")                                               \
  XX(ELEAKED, -4004, "coroutines leaked")                                                          \
  XX(EEOF, -4005, "end of stream")                                                                 \
  XX(ENOHOST, -4006, "no such host")

typedef enum tt_errno {
#define TT_ERRNO_ENUM_(name, value, msg) TT_##name = (value),
  TT_ERRNO_MAP(TT_ERRNO_ENUM_)
#undef TT_ERRNO_ENUM_
} tt_errno;

/* The message for an error code; for another negated errno (system calls behind the sockets
 * can return any), the C library's message; "unknown error" for anything else. Any thread,
 * signal-safe. */
TT_EXTERN const char *tt_strerror(int err);

/* The code's name without the TT_ prefix ("EINVAL"; "ENOENT" for another negated errno), or
 * NULL. Any thread, signal-safe. */
TT_EXTERN const char *tt_err_name(int err);

TT_END_DECLS

#endif
