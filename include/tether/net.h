/* SPDX-License-Identifier: MIT */
/* Network I/O on the runtime: a coroutine that waits on a socket parks (wait reason "IO wait")
 * and its worker runs other coroutines; each worker has its own poller (epoll). Stream sockets
 * over TCP (IPv4, IPv6) and Unix domain sockets, Go's net.Listen / net.Dial / net.Conn in C, and
 * tt_fd_wait for any other descriptor. See docs/NET.md. */
#ifndef TETHER_NET_H
#define TETHER_NET_H

#include <sys/types.h>

#include "common.h"

TT_BEGIN_DECLS

/* ---- Waiting on any descriptor ------------------------------------------------------------ */

#define TT_FD_READ 1  /* readable, or the peer hung up, or an error is pending */
#define TT_FD_WRITE 2 /* writable, or an error is pending */

/* Waits until fd is ready for one of `events` (TT_FD_READ and/or TT_FD_WRITE) or the deadline
 * (absolute tt_now() ns; TT_FOREVER: none) passes. fd is not changed (its flags stay as they are:
 * the caller usually makes it non-blocking itself) and not remembered after the call, so the
 * caller may close it at any time after. This is how other libraries' sockets are driven from a
 * coroutine: do the non-blocking call, and on EAGAIN wait here and try again. Returns the events
 * that are ready (> 0; an error or a hang-up reports every event asked for), or:
 *   TT_ETIMEDOUT   the deadline passed;      TT_ECANCELED   the caller was cancelled;
 *   TT_EBADF       fd is not an open descriptor (or one epoll cannot wait on, a regular file:
 *                  those are always ready, so the call returns events at once for them);
 *   TT_EINVAL      events has no known bit;  TT_ENOTRUNNING the runtime is not running.
 * Another coroutine waiting on the same fd at the same time is fine.
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_fd_wait(int fd, int events, int64_t deadline);

/* ---- Stream sockets ----------------------------------------------------------------------- */

/* A listening socket and a connection. Each is used through its handle from any coroutine or
 * plain thread; one reader and one writer may work on a connection at the same time (several
 * readers are allowed too, but their bytes interleave as the kernel hands them out).
 * Ownership, as for channels: the creator owns the handle's first reference; tt_conn_retain gives
 * another owner one of its own (a coroutine that will close the connection while its handler
 * reads it, say), tt_conn_release drops one. Close closes the socket for every owner: calls
 * blocked on it return TT_ECLOSED, later calls by other owners fail with TT_ECLOSED, and it drops
 * the caller's reference. The handle is freed (and the descriptor closed) when the last
 * reference goes: a close, or a release (which then closes too). A call made by someone who
 * holds no reference uses freed memory, as with fclose. Sockets belong to the run that made
 * them: close them before tt_run returns. */
typedef struct tt_listener tt_listener;
typedef struct tt_conn tt_conn;

/* Networks: "tcp" (IPv4 or IPv6, whichever the address names; "tcp" with an empty host listens
 * on both), "tcp4", "tcp6", "unix". Addresses are Go's: "host:port", "[v6addr]:port", ":port"
 * (every interface), "localhost:0" (port chosen by the kernel); a path for "unix" (a leading '@'
 * names Linux's abstract namespace). A host that is not a numeric address is resolved with
 * getaddrinfo on the blocking pool (tt_blocking), never on a worker. */

/* Listens: creates, binds and listens on a socket (backlog SOMAXCONN, SO_REUSEADDR for TCP).
 * Returns 0 and *out, or TT_EINVAL (bad network or address), TT_EADDRINUSE, TT_EACCES,
 * TT_EADDRNOTAVAIL, TT_ENOHOST (the name does not resolve), TT_EMFILE, TT_ENOMEM, ...
 * (a negative errno as TT_E*). Calls: may block (name resolution only); cancel point; plain
 * threads; not from signal handlers. */
TT_EXTERN int tt_listen(const char *network, const char *address, tt_listener **out);
/* tt_listen with a deadline for the name's resolution: TT_ETIMEDOUT. */
TT_EXTERN int tt_listen_dl(const char *network, const char *address, tt_listener **out,
                           int64_t deadline);

/* Accepts one connection (non-blocking, close-on-exec; TCP_NODELAY set as Go sets it). Returns 0
 * and *out, or TT_ECLOSED (the listener was closed), TT_ETIMEDOUT (the _dl variant),
 * TT_ECANCELED, TT_EMFILE (out of descriptors: the pending connection stays queued), TT_EINVAL.
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_accept(tt_listener *l, tt_conn **out);
TT_EXTERN int tt_accept_dl(tt_listener *l, tt_conn **out, int64_t deadline);

/* The listener's local address as "host:port" ("[v6]:port"; the path for unix) into buf (NUL
 * terminated). 0, TT_EINVAL (NULL or buf too small: 64 bytes always suffice for TCP). */
TT_EXTERN int tt_listener_addr(tt_listener *l, char *buf, size_t len);
/* The bound port (TCP), or TT_EINVAL. */
TT_EXTERN int tt_listener_port(tt_listener *l);
/* The descriptor (for setsockopt and the like; do not close it). */
TT_EXTERN int tt_listener_fd(tt_listener *l);

/* Closes the listener: blocked tt_accept calls return TT_ECLOSED, and the caller's reference is
 * dropped (see above); the socket is closed when the last reference goes (a unix socket's path
 * is unlinked then). 0, TT_ECLOSED (another owner closed it first: the reference is dropped all
 * the same) or TT_EINVAL (NULL).
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_listener_close(tt_listener *l);
/* One more reference for another owner / drop one (the last one closes). 0 or TT_EINVAL.
 * Calls: never block; any thread. */
TT_EXTERN int tt_listener_retain(tt_listener *l);
TT_EXTERN int tt_listener_release(tt_listener *l);

/* Connects, trying each address the name resolves to in turn until one connects. Returns 0 and
 * *out, or TT_ECONNREFUSED, TT_ETIMEDOUT (the _dl variant: the deadline covers resolution and
 * every attempt), TT_ENETUNREACH, TT_EHOSTUNREACH, TT_ENOHOST, TT_ECANCELED, TT_EINVAL, ...
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN int tt_dial(const char *network, const char *address, tt_conn **out);
TT_EXTERN int tt_dial_dl(const char *network, const char *address, tt_conn **out, int64_t deadline);

/* Adopts a connected stream socket (made non-blocking here). On success the connection owns fd
 * and tt_conn_close closes it. 0, TT_EINVAL (fd < 0), TT_EBADF, TT_ENOMEM. */
TT_EXTERN int tt_conn_from_fd(int fd, tt_conn **out);

/* Reads at most len bytes once some are available. Returns the count (> 0), 0 at end of stream
 * (the peer shut down its side, or len is 0), or TT_ECONNRESET, TT_ETIMEDOUT (the _dl variant; no
 * bytes were consumed), TT_ECLOSED (closed locally), TT_ECANCELED, TT_EINVAL, ...
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN ssize_t tt_conn_read(tt_conn *c, void *buf, size_t len);
TT_EXTERN ssize_t tt_conn_read_dl(tt_conn *c, void *buf, size_t len, int64_t deadline);

/* Reads exactly len bytes (Go's io.ReadFull). Returns 0, or TT_EEOF (the stream ended first),
 * or any tt_conn_read error; *done (may be NULL) is always the number of bytes stored in buf,
 * so an error loses nothing. Calls: as tt_conn_read. */
TT_EXTERN int tt_conn_read_full(tt_conn *c, void *buf, size_t len, size_t *done);
TT_EXTERN int tt_conn_read_full_dl(tt_conn *c, void *buf, size_t len, size_t *done,
                                   int64_t deadline);

/* Writes what the kernel takes at once, waiting only until it takes something. Returns the
 * count (> 0; 0 when len is 0), or TT_EPIPE (the peer is gone, or our side was shut down for
 * writing: never SIGPIPE), TT_ECONNRESET, TT_ETIMEDOUT, TT_ECLOSED, TT_ECANCELED, TT_EINVAL, ...
 * Calls: blocks; cancel point; plain threads; not from signal handlers. */
TT_EXTERN ssize_t tt_conn_write(tt_conn *c, const void *buf, size_t len);
TT_EXTERN ssize_t tt_conn_write_dl(tt_conn *c, const void *buf, size_t len, int64_t deadline);

/* Writes all len bytes (Go's Conn.Write). 0, or a tt_conn_write error; *done (may be NULL) is
 * the number of bytes the kernel accepted, so a caller can tell exactly what was sent.
 * Calls: as tt_conn_write. */
TT_EXTERN int tt_conn_write_all(tt_conn *c, const void *buf, size_t len, size_t *done);
TT_EXTERN int tt_conn_write_all_dl(tt_conn *c, const void *buf, size_t len, size_t *done,
                                   int64_t deadline);

#define TT_SHUT_RD 0
#define TT_SHUT_WR 1
#define TT_SHUT_RDWR 2
/* Shuts down one or both directions (shutdown(2)): after TT_SHUT_WR the peer reads end of stream.
 * 0, TT_EINVAL, TT_ECLOSED, TT_ENOTCONN. Calls: never blocks; any thread. */
TT_EXTERN int tt_conn_shutdown(tt_conn *c, int how);

/* Closes the connection: blocked reads and writes return TT_ECLOSED, and the caller's reference
 * is dropped (see above); the descriptor is closed when the last reference goes. 0, TT_ECLOSED
 * (another owner closed it first: the reference is dropped all the same) or TT_EINVAL (NULL).
 * Calls: never blocks; any thread; not from signal handlers. */
TT_EXTERN int tt_conn_close(tt_conn *c);
/* One more reference for another owner / drop one (the last one closes). 0 or TT_EINVAL.
 * Calls: never block; any thread. */
TT_EXTERN int tt_conn_retain(tt_conn *c);
TT_EXTERN int tt_conn_release(tt_conn *c);

/* The local and the peer's address, as tt_listener_addr writes them. */
TT_EXTERN int tt_conn_local_addr(tt_conn *c, char *buf, size_t len);
TT_EXTERN int tt_conn_remote_addr(tt_conn *c, char *buf, size_t len);
/* The descriptor (for setsockopt and the like; do not close or read it). */
TT_EXTERN int tt_conn_fd(tt_conn *c);

TT_END_DECLS

#endif
