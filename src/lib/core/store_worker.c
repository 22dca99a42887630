#include "store_worker.h"

#include <stdlib.h>

#include "../../common/common.h"

struct cg__store_worker {
  cg_store *store;
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cv;
  cg__job *in_head, *in_tail;   /* guarded by mu */
  cg__job *out_head, *out_tail; /* guarded by mu */
  int stop;                     /* guarded by mu */
  uv_async_t async;
  size_t pending; /* loop thread: submitted, done not called yet */
  /* Jobs submitted during this loop iteration, handed to the worker in one
   * go at the start of the next (uv_idle, which also keeps that iteration's
   * poll from blocking): one wake-up and one transaction for every click
   * that arrived together, instead of one per click. A uv_check would run
   * after this iteration's I/O, but one started from inside another check
   * callback only runs an iteration later, after a blocking poll. */
  uv_idle_t idle;
  cg__job *stage_head, *stage_tail;
  int idle_active;
  int closing; /* handles still to close before w is freed */
};

static void append(cg__job **head, cg__job **tail, cg__job *first, cg__job *last) {
  if (*tail) (*tail)->next = first;
  else *head = first;
  *tail = last;
}

static void run_batch(cg__store_worker *w, cg__job *batch) {
  /* No transaction (the write lock stayed busy past the store's timeout):
   * the jobs are not run at all — run one by one in autocommit each would
   * wait out the timeout again, and their writes would land while they
   * are reported as failed. Their done callbacks see commit_rc. */
  int rc = cg_store_begin(w->store);
  if (rc == 0) {
    for (cg__job *j = batch; j; j = j->next) {
      j->ran = 1;
      j->run(j, w->store);
    }
    rc = cg_store_commit(w->store);
  }
  for (cg__job *j = batch; j; j = j->next) j->commit_rc = rc;
}

static void worker_main(void *arg) {
  cg__store_worker *w = arg;
  for (;;) {
    uv_mutex_lock(&w->mu);
    while (!w->in_head && !w->stop) uv_cond_wait(&w->cv, &w->mu);
    if (!w->in_head) { /* stop, and nothing left */
      uv_mutex_unlock(&w->mu);
      return;
    }
    /* Take at most CG__STORE_BATCH_MAX jobs. */
    cg__job *batch = w->in_head, *last = batch;
    for (int n = 1; n < CG__STORE_BATCH_MAX && last->next; n++) last = last->next;
    w->in_head = last->next;
    if (!w->in_head) w->in_tail = NULL;
    last->next = NULL;
    uv_mutex_unlock(&w->mu);

    run_batch(w, batch);

    uv_mutex_lock(&w->mu);
    append(&w->out_head, &w->out_tail, batch, last);
    uv_mutex_unlock(&w->mu);
    uv_async_send(&w->async);
  }
}

static void deliver(cg__store_worker *w) {
  uv_mutex_lock(&w->mu);
  cg__job *j = w->out_head;
  w->out_head = w->out_tail = NULL;
  uv_mutex_unlock(&w->mu);
  while (j) {
    cg__job *next = j->next;
    j->next = NULL;
    w->pending--;
    j->done(j); /* may free j */
    j = next;
  }
  if (w->pending == 0) uv_unref((uv_handle_t *)&w->async);
}

static void on_async(uv_async_t *h) {
  deliver(CG_CONTAINER_OF(h, cg__store_worker, async));
}

static void flush_stage(cg__store_worker *w) {
  if (!w->stage_head) return;
  uv_mutex_lock(&w->mu);
  append(&w->in_head, &w->in_tail, w->stage_head, w->stage_tail);
  uv_cond_signal(&w->cv);
  uv_mutex_unlock(&w->mu);
  w->stage_head = w->stage_tail = NULL;
}

static void on_idle(uv_idle_t *h) {
  cg__store_worker *w = CG_CONTAINER_OF(h, cg__store_worker, idle);
  flush_stage(w);
  uv_idle_stop(&w->idle);
  w->idle_active = 0;
}

static void on_closed(uv_handle_t *h) {
  cg__store_worker *w = h->data;
  if (--w->closing == 0) free(w);
}

cg__store_worker *cg__store_worker_new(uv_loop_t *loop, cg_store *store, int *err) {
  cg__store_worker *w = calloc(1, sizeof(*w));
  int rc = CG_ENOMEM;
  if (!w) goto fail;
  w->store = store;
  if ((rc = uv_mutex_init(&w->mu)) != 0) goto fail_free;
  if ((rc = uv_cond_init(&w->cv)) != 0) goto fail_mu;
  if ((rc = uv_async_init(loop, &w->async, on_async)) != 0) goto fail_cv;
  uv_idle_init(loop, &w->idle);
  w->async.data = w->idle.data = w;
  /* Keeps the loop alive only while jobs are pending. */
  uv_unref((uv_handle_t *)&w->async);
  if ((rc = uv_thread_create(&w->thread, worker_main, w)) != 0) {
    uv_cond_destroy(&w->cv);
    uv_mutex_destroy(&w->mu);
    w->closing = 2;
    uv_close((uv_handle_t *)&w->async, on_closed); /* frees w */
    uv_close((uv_handle_t *)&w->idle, on_closed);
    goto fail;
  }
  if (err) *err = 0;
  return w;
fail_cv:
  uv_cond_destroy(&w->cv);
fail_mu:
  uv_mutex_destroy(&w->mu);
fail_free:
  free(w);
fail:
  if (err) *err = rc;
  return NULL;
}

void cg__store_worker_submit(cg__store_worker *w, cg__job *j) {
  j->next = NULL;
  j->commit_rc = 0;
  j->ran = 0;
  if (w->pending++ == 0) uv_ref((uv_handle_t *)&w->async);
  append(&w->stage_head, &w->stage_tail, j, j);
  if (!w->idle_active) {
    uv_idle_start(&w->idle, on_idle);
    w->idle_active = 1;
  }
}


void cg__store_worker_free(cg__store_worker *w) {
  if (!w) return;
  flush_stage(w);
  uv_mutex_lock(&w->mu);
  w->stop = 1;
  uv_cond_signal(&w->cv);
  uv_mutex_unlock(&w->mu);
  uv_thread_join(&w->thread); /* it runs every queued job first */
  deliver(w);
  uv_cond_destroy(&w->cv);
  uv_mutex_destroy(&w->mu);
  w->closing = 2;
  uv_close((uv_handle_t *)&w->async, on_closed);
  uv_close((uv_handle_t *)&w->idle, on_closed);
}
