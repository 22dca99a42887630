/* LD_PRELOAD shim for bench/run.sh: counts the transactions a process
 * commits through SQLite's sqlite3_exec("COMMIT") — the store worker's group
 * commits (src/lib/store/sqlite.c) — and writes the count to the file named
 * by CG_BENCH_COMMITS_FILE when the process exits normally. Changes nothing
 * else: every call goes on to the real sqlite3_exec. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef int (*exec_fn)(void *, const char *, int (*)(void *, int, char **, char **), void *, char **);

static atomic_ulong commits;

/* Exported despite the project's hidden visibility preset: it must interpose. */
__attribute__((visibility("default"))) int sqlite3_exec(void *db, const char *sql,
                                                        int (*cb)(void *, int, char **, char **), void *arg,
                                                        char **errmsg);
int sqlite3_exec(void *db, const char *sql, int (*cb)(void *, int, char **, char **), void *arg, char **errmsg) {
  static exec_fn real;
  if (!real) {
    void *p = dlsym(RTLD_NEXT, "sqlite3_exec");
    memcpy(&real, &p, sizeof real); /* object → function pointer (POSIX) */
  }
  if (sql && !strncasecmp(sql, "COMMIT", 6)) atomic_fetch_add(&commits, 1);
  return real(db, sql, cb, arg, errmsg);
}

__attribute__((destructor)) static void report(void) {
  const char *f = getenv("CG_BENCH_COMMITS_FILE");
  FILE *fp = f ? fopen(f, "w") : NULL;
  if (!fp) return;
  fprintf(fp, "%lu\n", (unsigned long)atomic_load(&commits));
  fclose(fp);
}
