/* Memory per long connection (bench/run_stream.sh): one process, one app,
 * N clients of the same kind connected to bench_stream_gateway --hold.
 * Prints one JSON line: RSS before any client, with all N connected, and
 * the difference per connection.
 *
 *   bench_stream_conns --mode lark|dingtalk --base http://127.0.0.1:PORT --n N
 *
 * Development tool, not a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cardgate.h"

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
    fclose(f);
  }
  return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static int connected, target;
static long rss0;
static uv_loop_t *loop;

static void on_state(cg_conn_state st, const char *detail, void *ud) {
  (void)ud;
  if (st == CG_CONN_FAILED) {
    fprintf(stderr, "failed: %s\n", detail);
    exit(1);
  }
  if (st != CG_CONN_CONNECTED) return;
  if (++connected == target) uv_stop(loop);
}

int main(int argc, char **argv) {
  int lark = 1;
  const char *base = NULL;
  target = 100;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--mode") && i + 1 < argc) lark = !strcmp(argv[++i], "lark");
    else if (!strcmp(argv[i], "--base") && i + 1 < argc) base = argv[++i];
    else if (!strcmp(argv[i], "--n") && i + 1 < argc) target = atoi(argv[++i]);
  }
  if (!base || target < 1) {
    fprintf(stderr, "usage: %s --mode lark|dingtalk --base URL --n N\n", argv[0]);
    return 2;
  }
  loop = uv_default_loop();
  cg_app_options ao;
  cg_app_options_init(&ao);
  int err = 0;
  cg_app *app = cg_app_new(loop, &ao, &err);
  if (!app) return 1;
  rss0 = rss_kib();
  void **clients = calloc((size_t)target, sizeof *clients);
  for (int i = 0; i < target; i++) {
    if (lark) {
      cg_lark_ws_options o;
      cg_lark_ws_options_init(&o);
      o.base_url = base;
      o.app_id = "cli_a1b2c3d4e5f60718";
      o.app_secret = "bench_secret";
      o.on_state = on_state;
      cg_lark_ws *c = cg_lark_ws_new(app, &o, &err);
      if (!c || cg_lark_ws_start(c)) return 1;
      clients[i] = c;
    } else {
      cg_dingtalk_stream_options o;
      cg_dingtalk_stream_options_init(&o);
      o.base_url = base;
      o.client_id = "ding_bench";
      o.client_secret = "bench_secret";
      o.on_state = on_state;
      cg_dingtalk_stream *c = cg_dingtalk_stream_new(app, &o, &err);
      if (!c || cg_dingtalk_stream_start(c)) return 1;
      clients[i] = c;
    }
  }
  uv_run(loop, UV_RUN_DEFAULT);
  long rss1 = rss_kib();
  printf("{\"connections\":%d,\"rss_before_kib\":%ld,\"rss_after_kib\":%ld,\"per_connection_kib\":%.1f}\n", target,
         rss0, rss1, (double)(rss1 - rss0) / target);
  fflush(stdout);
  return 0; /* the process ends here; the OS takes the connections down */
}
