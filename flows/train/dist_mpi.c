/* The transport over MPI (dist_transport.h): a duplicate of MPI_COMM_WORLD whose errors are
 * returned (MPI_ERRORS_RETURN) and reported as FG_E_IO with MPI's message. */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

#include "flows/train/dist_transport.h"

struct fg__dist_comm {
  MPI_Comm comm;
};

enum { PIECE = 1 << 30 }; /* bytes per message: MPI counts are ints */

/* Set by the launchers of Open MPI, MPICH / Intel MPI (Hydra), MVAPICH and PMIx (Slurm's srun
 * --mpi=pmix): without one, the process is not part of a job and stays a single process. */
static bool launched(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK",
                                     "PMIX_RANK", "MV2_COMM_WORLD_SIZE"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
    if (getenv(vars[i])) return true;
  return false;
}

static fg_status mpi_fail(int rc, const char *what, fg_err *e) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  msg[len] = '\0';
  return fg_err_set(e, FG_E_IO, "MPI: %s failed: %s", what, len ? msg : "unknown error");
}

fg_status fg__dist_join(fg__dist_comm **comm, int *rank, int *size, fg_err *e) {
  *comm = NULL, *rank = 0, *size = 1;
  if (!launched()) return FG_OK;
  int provided = 0, rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
  if (rc != MPI_SUCCESS) return fg_err_set(e, FG_E_IO, "MPI: MPI_Init_thread failed (%d)", rc);
  /* graphs call the sum from whichever pool thread runs the collective's kernel, one at a time */
  if (provided < MPI_THREAD_SERIALIZED) {
    MPI_Finalize();
    return fg_err_set(e, FG_E_MISUSE, "MPI: the library gives thread level %d; flowgrad needs "
                      "MPI_THREAD_SERIALIZED (%d)", provided, MPI_THREAD_SERIALIZED);
  }
  fg__dist_comm *c = malloc(sizeof *c);
  if (!c) {
    MPI_Finalize();
    return fg_err_set(e, FG_E_NOMEM, "MPI: out of memory");
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if ((rc = MPI_Comm_dup(MPI_COMM_WORLD, &c->comm)) != MPI_SUCCESS) {
    free(c);
    MPI_Finalize();
    return mpi_fail(rc, "MPI_Comm_dup", e);
  }
  MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(c->comm, rank);
  MPI_Comm_size(c->comm, size);
  *comm = c;
  return FG_OK;
}

void fg__dist_leave(fg__dist_comm *comm) {
  if (!comm) return;
  MPI_Comm_free(&comm->comm);
  free(comm);
  MPI_Finalize();
}

static int piece(size_t bytes, size_t at) {
  if (at >= bytes) return 0;
  return bytes - at < PIECE ? (int)(bytes - at) : PIECE;
}

static size_t pieces(size_t bytes) { return (bytes + PIECE - 1) / PIECE; }

/* Piece i of each direction goes out and comes in together; each direction is its own ordered
 * stream of pieces (MPI keeps messages between two ranks in order), so both sides agree on
 * them whatever the other direction's size. */
fg_status fg__dist_sendrecv(fg__dist_comm *comm, int to, const void *send, size_t send_bytes,
                            int from, void *recv, size_t recv_bytes, fg_err *e) {
  size_t n = pieces(send_bytes) > pieces(recv_bytes) ? pieces(send_bytes) : pieces(recv_bytes);
  for (size_t i = 0; i < n; i++) {
    size_t at = i * PIECE;
    MPI_Request req[2];
    int k = 0, rc = MPI_SUCCESS;
    if (at < recv_bytes)
      rc = MPI_Irecv((char *)recv + at, piece(recv_bytes, at), MPI_BYTE, from, 0, comm->comm,
                     &req[k++]);
    if (rc == MPI_SUCCESS && at < send_bytes)
      rc = MPI_Isend((const char *)send + at, piece(send_bytes, at), MPI_BYTE, to, 0, comm->comm,
                     &req[k++]);
    if (rc == MPI_SUCCESS) rc = MPI_Waitall(k, req, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "sending to a neighbour", e);
  }
  return FG_OK;
}

fg_status fg__dist_allgather(fg__dist_comm *comm, const void *mine, size_t bytes, void *all,
                             fg_err *e) {
  if (bytes > INT_MAX)
    return fg_err_set(e, FG_E_OVERFLOW, "MPI: gather of %zu bytes per rank", bytes);
  int rc = MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, comm->comm);
  return rc == MPI_SUCCESS ? FG_OK : mpi_fail(rc, "MPI_Allgather", e);
}

fg_status fg__dist_bcast(fg__dist_comm *comm, void *buf, size_t bytes, int root, fg_err *e) {
  for (size_t at = 0; at < bytes; at += PIECE) {
    int rc = MPI_Bcast((char *)buf + at, piece(bytes, at), MPI_BYTE, root, comm->comm);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Bcast", e);
  }
  return FG_OK;
}

void fg__dist_abort(fg__dist_comm *comm, int code) {
  if (comm) MPI_Abort(comm->comm, code);
}
