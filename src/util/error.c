/* SPDX-License-Identifier: MIT */
/* String tables for error codes, states and wait reasons, generated from their X-macro lists. */
#include <string.h>

#include "internal.h"

const char *tt_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define TT_ERR_CASE_(name, value, msg)                                                             \
  case value:                                                                                      \
    return msg;
    TT_ERRNO_MAP(TT_ERR_CASE_)
#undef TT_ERR_CASE_
  default:
    /* Another negated errno (a socket call's ENOENT, say): the C library's message. */
    if (err < 0 && err > -4000) {
      const char *m = strerrordesc_np(-err);
      if (m)
        return m;
    }
    return "unknown error";
  }
}

const char *tt_err_name(int err) {
  switch (err) {
#define TT_ERR_NAME_(name, value, msg)                                                             \
  case value:                                                                                      \
    return #name;
    TT_ERRNO_MAP(TT_ERR_NAME_)
#undef TT_ERR_NAME_
  default:
    return err < 0 && err > -4000 ? strerrorname_np(-err) : NULL;
  }
}

static const char *const state_strings[] = {
#define TT_STATE_STR_(name, str) str,
    TT_STATE_MAP(TT_STATE_STR_)
#undef TT_STATE_STR_
};

static const char *const wait_strings[] = {
#define TT_WAIT_STR_(name, str) str,
    TT_WAIT_REASON_MAP(TT_WAIT_STR_)
#undef TT_WAIT_STR_
};

const char *tt_state_string(int state) {
  return state >= 0 && state < TT_STATE_COUNT ? state_strings[state] : NULL;
}

const char *tt_wait_reason_string(int reason) {
  return reason >= 0 && reason < TT_WAIT_COUNT ? wait_strings[reason] : NULL;
}
