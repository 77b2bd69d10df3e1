/* SPDX-License-Identifier: MIT */
/* TEMPORARY stand-ins for the bodies of src/debug/metrics.c and src/debug/page.c (debug_int.h),
 * written in parallel on another branch: the lead deletes this file when that branch is merged.
 * They write the documented shapes, minimally, so that the server can be built and tested. */
#include "debug/debug_int.h"
#include "tether/error.h"

int tt__debug_metrics(tt__sink *s) {
  int running = tt_running();
  tt__sink_str(s, "# HELP tether_up Whether the tether library is loaded and serving.\n"
                  "# TYPE tether_up gauge\ntether_up 1\n"
                  "# HELP tether_running Whether the runtime runs.\n"
                  "# TYPE tether_running gauge\ntether_running ");
  tt__sink_str(s, running ? "1\n" : "0\n");
  tt_counts c;
  if (running && tt_counts_get(&c) == 0) {
    tt__sink_str(s, "# HELP tether_coroutines Live coroutines by state.\n"
                    "# TYPE tether_coroutines gauge\n");
    for (int i = 0; i < TT_STATE_COUNT; i++) {
      tt__sink_printf(s, "tether_coroutines{state=\"%s\"} ", tt_state_string(i));
      tt__sink_i64(s, c.by_state[i]);
      tt__sink_str(s, "\n");
    }
  }
  return s->err;
}

int tt__debug_groups_json(tt__sink *s, const char *query) {
  (void)query;
  if (!tt_running())
    return TT_ENOTRUNNING;
  tt__sink_str(s, "{\"total\":");
  tt__sink_i64(s, tt_num_coroutines());
  tt__sink_str(s, ",\"groups\":[]}\n");
  return s->err;
}

const char tt__debug_page_html[] =
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tether</title></head>\n"
    "<body><h1>tether</h1><p>The live page is not built in yet.</p></body></html>\n";
