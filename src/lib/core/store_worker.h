/* The store worker: one thread per app that runs store jobs in batches, one
 * transaction per batch (group commit). The loop thread submits jobs; the
 * worker takes everything queued, runs it inside cg_store_begin/commit, and
 * hands the jobs back to the loop (uv_async), where their done callbacks
 * run — after the commit, so nothing is answered before it is durable.
 * One writer per process also means no in-process write-lock contention;
 * the compare-and-set still arbitrates between processes sharing the file. */
#ifndef CG_STORE_WORKER_H
#define CG_STORE_WORKER_H

#include <uv.h>

#include "cardgate/store.h"

typedef struct cg__job cg__job;
typedef struct cg__store_worker cg__store_worker;

struct cg__job {
  void (*run)(cg__job *j, cg_store *s); /* worker thread, inside the batch */
  void (*done)(cg__job *j);             /* loop thread, after the commit */
  int commit_rc; /* 0, or the begin/commit failure (the job's writes are lost) */
  int ran;       /* run was called (0 when the transaction could not begin) */
  cg__job *next;
};

#define CG__STORE_BATCH_MAX 256 /* jobs per transaction */

/* Starts the worker thread. NULL + *err on failure. */
cg__store_worker *cg__store_worker_new(uv_loop_t *loop, cg_store *store,
                                       int *err);

/* Queues j (embedded in the caller's struct). Loop thread only. done will be
 * called exactly once, on the loop thread, never inside this call. */
void cg__store_worker_submit(cg__store_worker *w, cg__job *j);

/* Stops the worker after it has run every queued job, calls the remaining
 * done callbacks (inside this call), and closes its handle (memory freed in
 * the close callback: run the loop afterwards). Accepts NULL. */
void cg__store_worker_free(cg__store_worker *w);

#endif
