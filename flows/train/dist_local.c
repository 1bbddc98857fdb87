/* The transport of a build without MPI (dist_transport.h): every process is a job of one. */
#include "flows/train/dist_transport.h"

fg_status fg__dist_join(fg__dist_comm **comm, int *rank, int *size, fg_err *e) {
  (void)e;
  *comm = NULL, *rank = 0, *size = 1;
  return FG_OK;
}

void fg__dist_leave(fg__dist_comm *comm) { (void)comm; }

/* Never reached: dist.c calls the transport only when it joined a job. */
static fg_status no_job(fg_err *e) { return fg_err_set(e, FG_E_INTERNAL, "dist: no MPI job"); }

fg_status fg__dist_sendrecv(fg__dist_comm *comm, int to, const void *send, size_t send_bytes,
                            int from, void *recv, size_t recv_bytes, fg_err *e) {
  (void)comm, (void)to, (void)send, (void)send_bytes, (void)from, (void)recv, (void)recv_bytes;
  return no_job(e);
}

fg_status fg__dist_allgather(fg__dist_comm *comm, const void *mine, size_t bytes, void *all,
                             fg_err *e) {
  (void)comm, (void)mine, (void)bytes, (void)all;
  return no_job(e);
}

fg_status fg__dist_bcast(fg__dist_comm *comm, void *buf, size_t bytes, int root, fg_err *e) {
  (void)comm, (void)buf, (void)bytes, (void)root;
  return no_job(e);
}

void fg__dist_abort(fg__dist_comm *comm, int code) { (void)comm, (void)code; }
