/* See fake_process.h. */
#include "fake_process.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* tests/unit/<script>: via $CG_SOURCE_DIR, else this file's directory's
 * parent (this file lives in tests/unit/support/). */
static int script_path(char *out, size_t cap, const char *script) {
  const char *src = getenv("CG_SOURCE_DIR");
  int n;
  if (src) {
    n = snprintf(out, cap, "%s/tests/unit/%s", src, script);
  } else {
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", __FILE__);
    char *slash = strrchr(dir, '/');
    if (!slash) return -1;
    *slash = '\0'; /* …/tests/unit/support */
    slash = strrchr(dir, '/');
    if (!slash) return -1;
    *slash = '\0'; /* …/tests/unit */
    n = snprintf(out, cap, "%s/%s", dir, script);
  }
  return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

int cg_test_fake_start(cg_test_fake *f, const char *script) {
  memset(f, 0, sizeof(*f));
  char path[4096];
  if (script_path(path, sizeof(path), script) != 0) return -1;
  const char *node = getenv("CG_NODE") ? getenv("CG_NODE") : "node";
  int to_child[2], from_child[2];
  if (pipe(to_child) || pipe(from_child)) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    close(to_child[1]);
    close(from_child[0]);
    execlp(node, node, path, (char *)NULL);
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  f->pid = pid;
  f->in = fdopen(to_child[1], "w");
  f->out = fdopen(from_child[0], "r");
  struct pollfd p = {.fd = from_child[0], .events = POLLIN};
  if (poll(&p, 1, 15000) != 1) return -1;
  char line[256];
  if (!fgets(line, sizeof(line), f->out)) return -1;
  if (sscanf(line, "{\"port\":%d}", &f->port) != 1) return -1;
  return 0;
}

int cg_test_fake_send(cg_test_fake *f, const char *cmd, char *reply,
                      size_t cap) {
  fprintf(f->in, "%s\n", cmd);
  fflush(f->in);
  return fgets(reply, (int)cap, f->out) ? 0 : -1;
}

json_t *cg_test_fake_cmd(cg_test_fake *f, const char *cmd) {
  static char line[1 << 20];
  if (cg_test_fake_send(f, cmd, line, sizeof(line)) != 0) return NULL;
  return json_loads(line, 0, NULL);
}

void cg_test_fake_stop(cg_test_fake *f) {
  if (f->in) fclose(f->in); /* the fake exits when its stdin closes */
  if (f->out) fclose(f->out);
  if (f->pid > 0) {
    kill(f->pid, SIGTERM);
    waitpid(f->pid, NULL, 0);
  }
  memset(f, 0, sizeof(*f));
}

void cg_test_unset_proxies(void) {
  static const char *const proxies[] = {"http_proxy",  "HTTP_PROXY",
                                        "https_proxy", "HTTPS_PROXY",
                                        "all_proxy",   "ALL_PROXY"};
  for (size_t i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++)
    unsetenv(proxies[i]);
}
