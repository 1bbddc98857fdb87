/* What flows/train/dist.c needs from the message-passing library, implemented once over MPI
 * (dist_mpi.c, built with the `mpi` feature) and once for builds without it (dist_local.c,
 * which never joins a job).  Internal: not installed.  Every call is collective but sendrecv,
 * which pairs this rank with two neighbours; byte counts may exceed INT_MAX. */
#ifndef FG_DIST_TRANSPORT_H
#define FG_DIST_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

typedef struct fg__dist_comm fg__dist_comm;

/* Joins the job this process was launched in: *comm, *rank and *size set, or *comm NULL when
 * it was not launched by an MPI launcher (or the build has no MPI): a single process. */
fg_status fg__dist_join(fg__dist_comm **comm, int *rank, int *size, fg_err *e);
void fg__dist_leave(fg__dist_comm *comm);
/* Sends send_bytes to rank `to` while receiving recv_bytes from rank `from`. */
fg_status fg__dist_sendrecv(fg__dist_comm *comm, int to, const void *send, size_t send_bytes,
                            int from, void *recv, size_t recv_bytes, fg_err *e);
fg_status fg__dist_allgather(fg__dist_comm *comm, const void *mine, size_t bytes, void *all,
                             fg_err *e);
fg_status fg__dist_bcast(fg__dist_comm *comm, void *buf, size_t bytes, int root, fg_err *e);
void fg__dist_abort(fg__dist_comm *comm, int code);

#endif
