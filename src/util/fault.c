/* SPDX-License-Identifier: MIT */
/* Fault injection, so that tests can reach the error paths (SQLite's fault.c, neco's fail
 * counters): TT_FAULT=site:n[,site:n...] makes the n-th operation of that kind after start-up
 * fail — `alloc` (the runtime's heap allocations), `mmap` (stack mappings), `thread` (starting a
 * worker). tt__fault_arm does the same from a test. Costs one predictable branch on paths that
 * allocate; none on the switch path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static _Atomic int64_t fail_at[TT__FAULT_COUNT]; /* 0: never */
static _Atomic int64_t count[TT__FAULT_COUNT];
static const char *const names[TT__FAULT_COUNT] = {"alloc", "mmap", "thread"};

_Atomic int tt__faults_armed;

void tt__fault_arm(int site, int64_t nth) {
  /* relaxed: tests arm from the thread that then runs the operation. */
  atomic_store_explicit(&count[site], 0, memory_order_relaxed);
  atomic_store_explicit(&fail_at[site], nth, memory_order_relaxed);
  if (nth > 0)
    atomic_store_explicit(&tt__faults_armed, 1, memory_order_relaxed);
}

bool tt__fault_slow(int site) {
  int64_t at = atomic_load_explicit(&fail_at[site], memory_order_relaxed);
  if (at <= 0)
    return false;
  if (atomic_fetch_add_explicit(&count[site], 1, memory_order_relaxed) + 1 != at)
    return false;
  atomic_store_explicit(&fail_at[site], 0, memory_order_relaxed); /* once */
  return true;
}

int tt__fault_load(void) {
  for (int i = 0; i < TT__FAULT_COUNT; i++)
    tt__fault_arm(i, 0);
  atomic_store_explicit(&tt__faults_armed, 0, memory_order_relaxed);
  const char *s = getenv("TT_FAULT");
  if (s == NULL || *s == '\0')
    return 0;
  char buf[256];
  if (strlen(s) >= sizeof buf) {
    fprintf(stderr, "tether: invalid TT_FAULT=\"%s\": too long\n", s);
    return TT_EINVAL;
  }
  strcpy(buf, s);
  char *save = NULL;
  for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
    char *colon = strchr(item, ':'), *end;
    int site = -1;
    if (colon) {
      *colon = '\0';
      for (int i = 0; i < TT__FAULT_COUNT; i++)
        if (strcmp(item, names[i]) == 0)
          site = i;
    }
    long long n = colon ? strtoll(colon + 1, &end, 10) : 0;
    if (site < 0 || n <= 0 || *end != '\0') {
      fprintf(stderr, "tether: invalid TT_FAULT=\"%s\": want alloc|mmap|thread:N (N >= 1)\n", s);
      return TT_EINVAL;
    }
    tt__fault_arm(site, n);
  }
  return 0;
}

void *tt__malloc(size_t n) { return tt__fault(TT__FAULT_ALLOC) ? NULL : malloc(n); }

void *tt__calloc(size_t n, size_t size) {
  return tt__fault(TT__FAULT_ALLOC) ? NULL : calloc(n, size);
}

void *tt__realloc(void *p, size_t n) { return tt__fault(TT__FAULT_ALLOC) ? NULL : realloc(p, n); }

void *tt__aligned_alloc(size_t align, size_t n) {
  return tt__fault(TT__FAULT_ALLOC) ? NULL : aligned_alloc(align, n);
}

char *tt__strdup(const char *s) { return tt__fault(TT__FAULT_ALLOC) ? NULL : strdup(s); }
