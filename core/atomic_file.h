/* Internal: replacing a file atomically, for every file the library writes (safetensors
 * checkpoints, PNG grids, graph dumps).  The content goes to "<path>.tmp.<pid>" beside path,
 * which is flushed and fsynced, renamed over path, and the directory fsynced, so a crash or
 * kill at any moment leaves either the previous file or the new one, never a mix.  A killed
 * writer may leave its temporary file behind; it is never read, and the next write to the same
 * path removes it once it is stale (fg_atomic_file_clean). */
#ifndef FG_ATOMIC_FILE_H
#define FG_ATOMIC_FILE_H

#include <stdio.h>

#include "core/status.h"

/* Writes the content to f.  A failing fwrite needs no message of its own: the writer may stop
 * there and return FG_OK, and fg_atomic_file_write reports the stream's error (with errno).
 * Any other failure the writer reports itself, in e, and returns its status. */
typedef fg_status (*fg_file_writer)(FILE *f, void *ctx, fg_err *e);

/* Makes path hold what write(f, ctx, e) writes, atomically (see above).  On failure (the
 * writer's, or creating, writing, syncing or renaming the temporary file) path is untouched,
 * the temporary file is removed and e, naming path, says what failed ("<path>: cannot create
 * the temporary file ...", "<path>: writing the temporary file ... failed: ...", "<path>:
 * cannot replace it: ...").  Only the final directory sync can fail after path has been
 * replaced ("<path>: written, but syncing directory ... failed"). */
fg_status fg_atomic_file_write(const char *path, fg_file_writer write, void *ctx, fg_err *e);

/* Seconds a leftover temporary file must have been unchanged before it is stale. */
#define FG_ATOMIC_STALE_SECONDS 10
/* Removes the temporary files interrupted writes to path left: in path's directory, files named
 * exactly "<name of path>.tmp.<pid>" that are regular files of this user, whose pid is not a
 * running process (nor this one) and that have not changed for FG_ATOMIC_STALE_SECONDS.  Nothing
 * else is touched.  *removed (may be NULL) counts them.  fg_atomic_file_write calls it first;
 * a directory that cannot be read is not an error (there is nothing to clean that can be seen). */
fg_status fg_atomic_file_clean(const char *path, int *removed, fg_err *e);

#endif
