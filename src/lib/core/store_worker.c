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
};

static void append(cg__job **head, cg__job **tail, cg__job *first, cg__job *last) {
  if (*tail) (*tail)->next = first;
  else *head = first;
  *tail = last;
}

static void run_batch(cg__store_worker *w, cg__job *batch) {
  int rc = cg_store_begin(w->store);
  for (cg__job *j = batch; j; j = j->next) j->run(j, w->store);
  if (rc == 0) rc = cg_store_commit(w->store);
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

static void on_closed(uv_handle_t *h) {
  free(CG_CONTAINER_OF(h, cg__store_worker, async));
}

cg__store_worker *cg__store_worker_new(uv_loop_t *loop, cg_store *store, int *err) {
  cg__store_worker *w = calloc(1, sizeof(*w));
  int rc = CG_ENOMEM;
  if (!w) goto fail;
  w->store = store;
  if ((rc = uv_mutex_init(&w->mu)) != 0) goto fail_free;
  if ((rc = uv_cond_init(&w->cv)) != 0) goto fail_mu;
  if ((rc = uv_async_init(loop, &w->async, on_async)) != 0) goto fail_cv;
  /* Keeps the loop alive only while jobs are pending. */
  uv_unref((uv_handle_t *)&w->async);
  if ((rc = uv_thread_create(&w->thread, worker_main, w)) != 0) {
    uv_cond_destroy(&w->cv);
    uv_mutex_destroy(&w->mu);
    uv_close((uv_handle_t *)&w->async, on_closed); /* frees w */
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
  if (w->pending++ == 0) uv_ref((uv_handle_t *)&w->async);
  uv_mutex_lock(&w->mu);
  append(&w->in_head, &w->in_tail, j, j);
  uv_cond_signal(&w->cv);
  uv_mutex_unlock(&w->mu);
}


void cg__store_worker_free(cg__store_worker *w) {
  if (!w) return;
  uv_mutex_lock(&w->mu);
  w->stop = 1;
  uv_cond_signal(&w->cv);
  uv_mutex_unlock(&w->mu);
  uv_thread_join(&w->thread); /* it runs every queued job first */
  deliver(w);
  uv_cond_destroy(&w->cv);
  uv_mutex_destroy(&w->mu);
  uv_close((uv_handle_t *)&w->async, on_closed);
}
