/* SPDX-License-Identifier: MIT */
/* The runtime's knobs: one table, read at start-up from tt_run's options and the environment
 * (TT_PROCS, TT_SEED, TT_STACK_SIZE, TT_DEBUG=key=value,...), like Go's GODEBUG. An option set in
 * code wins over the environment, which wins over the default. A malformed value is an error
 * naming the knob, never a silent default. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "internal.h"
#include "leak/leak_int.h"

#define TT_STACK_MIN ((size_t)16 << 10)
#define TT_STACK_MAX ((size_t)1 << 30)
#define TT_STACK_DEFAULT ((size_t)256 << 10)
#define TT_BLOCKING_DEFAULT 64
#define TT_BLOCKING_LIMIT 10000

static int bad(const char *knob, const char *value, const char *why) {
  fprintf(stderr, "tether: invalid %s=\"%s\": %s\n", knob, value, why);
  return TT_EINVAL;
}

/* Parses an unsigned decimal integer with an optional size suffix (k, m, g: powers of 1024). */
static int parse_size(const char *s, uint64_t *out) {
  char *end;
  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0)
    return -1;
  uint64_t mul = 1;
  if (*end == 'k' || *end == 'K')
    mul = 1 << 10, end++;
  else if (*end == 'm' || *end == 'M')
    mul = 1 << 20, end++;
  else if (*end == 'g' || *end == 'G')
    mul = 1 << 30, end++;
  if (*end != '\0' || (mul > 1 && v > UINT64_MAX / mul))
    return -1;
  *out = v * mul;
  return 0;
}

/* Parses a duration: an integer with a unit (ns, us, ms, s) or bare nanoseconds. */
static int parse_duration(const char *s, int64_t *out) {
  char *end;
  if (*s < '0' || *s > '9')
    return -1;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0)
    return -1;
  int64_t mul = 1;
  if (strcmp(end, "ns") == 0 || *end == '\0')
    mul = 1;
  else if (strcmp(end, "us") == 0)
    mul = TT_USEC;
  else if (strcmp(end, "ms") == 0)
    mul = TT_MSEC;
  else if (strcmp(end, "s") == 0)
    mul = TT_SEC;
  else
    return -1;
  if (v > INT64_MAX / mul)
    return -1;
  *out = v * mul;
  return 0;
}

int tt__check_stack_size(size_t size) {
  return size >= TT_STACK_MIN && size <= TT_STACK_MAX ? 0 : TT_EINVAL;
}

/* TT_DEBUG's keys. Unknown keys are ignored, as GODEBUG ignores them, so a setting meant for a
 * newer version does not stop an older one. */
static int debug_key(const char *key, const char *val) {
  if (strcmp(key, "grace") == 0) {
    int64_t d;
    if (parse_duration(val, &d) != 0)
      return bad("TT_DEBUG grace", val, "want a duration such as 500ms");
    tt__rt.grace_ns = d;
  } else if (strcmp(key, "blockingidle") == 0) {
    int64_t d;
    if (parse_duration(val, &d) != 0 || d <= 0)
      return bad("TT_DEBUG blockingidle", val, "want a positive duration such as 10s");
    tt__rt.blocking_idle_ns = d;
  } else if (strcmp(key, "stackcanary") == 0) {
    if (strcmp(val, "0") != 0 && strcmp(val, "1") != 0)
      return bad("TT_DEBUG stackcanary", val, "want 0 or 1");
    tt__rt.debug_canary = val[0] == '1';
  } else if (strcmp(key, "creationstack") == 0) {
    uint64_t v;
    if (parse_size(val, &v) != 0 || v > 64)
      return bad("TT_DEBUG creationstack", val, "want a number of levels from 0 to 64");
    tt__rt.creationstack = (int)v;
  } else if (strcmp(key, "suspectcount") == 0) {
    uint64_t v;
    if (parse_size(val, &v) != 0 || v < 1)
      return bad("TT_DEBUG suspectcount", val, "want a number of coroutines of at least 1");
    tt__suspect_count = v;
  } else if (strcmp(key, "suspectage") == 0) {
    int64_t d;
    if (parse_duration(val, &d) != 0)
      return bad("TT_DEBUG suspectage", val, "want a duration such as 60s");
    tt__suspect_age = d;
  } else if (strcmp(key, "watchdog") == 0) {
    int64_t d;
    if (strcmp(val, "off") == 0)
      d = 0;
    else if (parse_duration(val, &d) != 0)
      return bad("TT_DEBUG watchdog", val, "want a duration such as 100ms, or 0 or off");
    tt__watchdog_knob(d);
  } else if (strcmp(key, "stackguard") == 0) {
    if (strcmp(val, "auto") == 0)
      tt__rt.guard_mode = 1;
    else if (strcmp(val, "0") == 0)
      tt__rt.guard_mode = 0;
    else if (strcmp(val, "1") == 0)
      tt__rt.guard_mode = 2;
    else
      return bad("TT_DEBUG stackguard", val, "want auto, 0 or 1");
  }
  return 0;
}

static int parse_debug(const char *s) {
  char buf[1024];
  if (strlen(s) >= sizeof buf)
    return bad("TT_DEBUG", s, "too long");
  strcpy(buf, s);
  char *save = NULL;
  for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(item, '=');
    if (eq == NULL)
      return bad("TT_DEBUG", item, "want key=value");
    *eq = '\0';
    int r = debug_key(item, eq + 1);
    if (r != 0)
      return r;
  }
  return 0;
}

int tt__knobs_load(const tt_run_opts *o) {
  static const tt_run_opts none;
  if (o == NULL)
    o = &none;
  const char *s;

  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  tt__rt.procs = ncpu > 0 ? (int)ncpu : 1;
  if ((s = getenv("TT_PROCS")) != NULL && *s) {
    uint64_t v;
    if (parse_size(s, &v) != 0 || v < 1 || v > 1024)
      return bad("TT_PROCS", s, "want a number of workers from 1 to 1024");
    tt__rt.procs = (int)v;
  }
  if (o->procs < 0 || o->procs > 1024) {
    fprintf(stderr, "tether: invalid tt_run_opts.procs %d: want 1 to 1024\n", o->procs);
    return TT_EINVAL;
  }
  if (o->procs > 0)
    tt__rt.procs = o->procs;

  tt__rt.seed = 0;
  tt__rt.seed_given = false;
  if ((s = getenv("TT_SEED")) != NULL && *s) {
    tt__rt.seed_given = true;
    uint64_t v;
    if (parse_size(s, &v) != 0)
      return bad("TT_SEED", s, "want an unsigned integer");
    tt__rt.seed = v;
  }
  if (o->seed) {
    tt__rt.seed = o->seed;
    tt__rt.seed_given = true;
  }
  tt__rt.deterministic = tt__rt.seed_given && tt__rt.procs == 1;
  while (tt__rt.seed == 0) {
    if (getrandom(&tt__rt.seed, sizeof tt__rt.seed, 0) != sizeof tt__rt.seed)
      tt__rt.seed = (uint64_t)tt__clock() ^ (uint64_t)getpid();
  }

  tt__rt.stack_size = TT_STACK_DEFAULT;
  if ((s = getenv("TT_STACK_SIZE")) != NULL && *s) {
    uint64_t v;
    if (parse_size(s, &v) != 0 || tt__check_stack_size(v) != 0)
      return bad("TT_STACK_SIZE", s, "want a size from 16k to 1g (a number of bytes, k, m or g)");
    tt__rt.stack_size = v;
  }
  if (o->stack_size) {
    if (tt__check_stack_size(o->stack_size) != 0) {
      fprintf(stderr, "tether: invalid tt_run_opts.stack_size %zu: want 16 KiB to 1 GiB\n",
              o->stack_size);
      return TT_EINVAL;
    }
    tt__rt.stack_size = o->stack_size;
  }

  tt__rt.blocking_max = TT_BLOCKING_DEFAULT;
  if ((s = getenv("TT_BLOCKING_MAX")) != NULL && *s) {
    uint64_t v;
    if (parse_size(s, &v) != 0 || v < 1 || v > TT_BLOCKING_LIMIT)
      return bad("TT_BLOCKING_MAX", s, "want a number of threads from 1 to 10000");
    tt__rt.blocking_max = (int)v;
  }
  if (o->blocking_max < 0 || o->blocking_max > TT_BLOCKING_LIMIT) {
    fprintf(stderr, "tether: invalid tt_run_opts.blocking_max %d: want 1 to 10000\n",
            o->blocking_max);
    return TT_EINVAL;
  }
  if (o->blocking_max > 0)
    tt__rt.blocking_max = o->blocking_max;

  tt__rt.grace_ns = TT_SEC;
  tt__rt.blocking_idle_ns = 10 * TT_SEC;
  tt__rt.debug_canary = false;
  tt__rt.guard_mode = 1;
  tt__rt.creationstack = 0;
  tt__leak_suspect_defaults();
  tt__watchdog_knob(-1);
  if ((s = getenv("TT_DEBUG")) != NULL && *s) {
    int r = parse_debug(s);
    if (r != 0)
      return r;
  }
  if (o->creationstack < 0 || o->creationstack > 64) {
    fprintf(stderr, "tether: invalid tt_run_opts.creationstack %d: want 0 to 64\n",
            o->creationstack);
    return TT_EINVAL;
  }
  if (o->creationstack > 0)
    tt__rt.creationstack = o->creationstack;

  tt__rt.leakcheck = TT_LEAKCHECK_OFF;
  if ((s = getenv("TT_LEAKCHECK")) != NULL && *s) {
    if (strcmp(s, "1") == 0)
      tt__rt.leakcheck = TT_LEAKCHECK_EXIT;
    else if (strcmp(s, "eager") == 0)
      tt__rt.leakcheck = TT_LEAKCHECK_EAGER;
    else if (strcmp(s, "0") != 0)
      return bad("TT_LEAKCHECK", s, "want 0, 1 (check at exit) or eager (and prove as it happens)");
  }
  if (o->leakcheck < -1 || o->leakcheck > TT_LEAKCHECK_EAGER) {
    fprintf(stderr, "tether: invalid tt_run_opts.leakcheck %d: want -1 to 2\n", o->leakcheck);
    return TT_EINVAL;
  }
  if (o->leakcheck)
    tt__rt.leakcheck = o->leakcheck < 0 ? TT_LEAKCHECK_OFF : o->leakcheck;

  tt__rt.traceback = TT__TB_SINGLE;
  if ((s = getenv("TT_TRACEBACK")) != NULL && *s) {
    static const char *const levels[] = {"none", "single", "all", "system", "crash"};
    int lv = -1;
    for (int i = 0; i < 5; i++)
      if (strcmp(s, levels[i]) == 0)
        lv = i;
    if (lv < 0)
      return bad("TT_TRACEBACK", s, "want none, single, all, system or crash");
    tt__rt.traceback = lv;
  }
  tt__rt.sigquit_continue = false;
  if ((s = getenv("TT_SIGQUIT")) != NULL && *s) {
    if (strcmp(s, "dump") == 0)
      tt__rt.sigquit_continue = true;
    else if (strcmp(s, "exit") != 0)
      return bad("TT_SIGQUIT", s, "want dump (dump and go on) or exit (dump and exit 2)");
  }
  if (o->grace_ns)
    tt__rt.grace_ns = o->grace_ns < 0 ? 0 : o->grace_ns;
  tt__rt.report_fd = o->report_fd == 0 ? 2 : o->report_fd;
  return 0;
}
