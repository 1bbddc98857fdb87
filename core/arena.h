/* A bump allocator for small objects that live as long as their owner (a graph's names and
 * attributes): memory comes in chunks that never move, so pointers into it stay valid while
 * the owner's other arrays grow. */
#ifndef FG_ARENA_H
#define FG_ARENA_H

#include <stddef.h>

typedef struct fg_arena_chunk fg_arena_chunk;
typedef struct fg_arena {
  fg_arena_chunk *head;
  size_t used, cap; /* within head */
} fg_arena;

void fg_arena_init(fg_arena *a);
/* 16-byte-aligned zeroed memory, or NULL when out of memory (the arena is a malloc-like
 * allocator: its callers turn NULL into their own FG_E_NOMEM). */
void *fg_arena_alloc(fg_arena *a, size_t bytes);
/* A copy of bytes (or of a NUL-terminated string) in the arena. */
void *fg_arena_dup(fg_arena *a, const void *src, size_t bytes);
char *fg_arena_strdup(fg_arena *a, const char *s);
void fg_arena_free(fg_arena *a);

#endif
