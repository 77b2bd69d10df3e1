/* SPDX-License-Identifier: MIT */
/* Reader/writer mutexes (Go's sync.RWMutex): not yet implemented. */
#include "sync_int.h"

void tt__rwmutex_holder_exited(const void *rw, uint32_t kind, tt_id id) {
  (void)rw;
  (void)kind;
  (void)id;
}
