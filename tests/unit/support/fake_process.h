/* Shared by the unit tests: a Node fake server (tests/unit/<script>.mjs)
 * run as a child process. It prints {"port":N} on its stdout, then answers
 * each JSON command line on its stdin with one JSON line. */
#ifndef CG_TEST_FAKE_PROCESS_H
#define CG_TEST_FAKE_PROCESS_H

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

typedef struct cg_test_fake {
  pid_t pid;
  FILE *in;  /* its stdin: commands */
  FILE *out; /* its stdout: answers */
  int port;
} cg_test_fake;

/* Starts `node <script>` ($CG_NODE, default "node"); script is a file name
 * in tests/unit/, found through $CG_SOURCE_DIR or else next to this
 * source. Waits up to 15 s for the port. 0, or -1 on failure. */
int cg_test_fake_start(cg_test_fake *f, const char *script);

/* Sends one command line; reads one answer line (newline kept) into
 * reply[cap]. 0, or -1 when no line came. */
int cg_test_fake_send(cg_test_fake *f, const char *cmd, char *reply,
                      size_t cap);

/* Sends one command; the parsed answer (caller json_decref()s), or NULL
 * when no line came or it is not JSON. Not reentrant. */
json_t *cg_test_fake_cmd(cg_test_fake *f, const char *cmd);

/* Closes its stdin and stdout, SIGTERMs and reaps it, zeroes f. */
void cg_test_fake_stop(cg_test_fake *f);

/* Unsets every proxy variable: nothing may sit between client and fake. */
void cg_test_unset_proxies(void);

#endif
