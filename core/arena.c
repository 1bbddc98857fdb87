#include "core/arena.h"

#include <stdlib.h>
#include <string.h>

struct fg_arena_chunk {
  fg_arena_chunk *next;
  size_t cap;
  _Alignas(16) unsigned char data[];
};

enum { ARENA_CHUNK = 16384 };

void fg_arena_init(fg_arena *a) { memset(a, 0, sizeof *a); }

void *fg_arena_alloc(fg_arena *a, size_t bytes) {
  size_t need = (bytes + 15) & ~(size_t)15;
  if (need < bytes) return NULL;
  if (!a->head || a->cap - a->used < need) {
    size_t cap = need > ARENA_CHUNK ? need : ARENA_CHUNK;
    fg_arena_chunk *c = malloc(sizeof *c + cap);
    if (!c) return NULL;
    c->next = a->head;
    c->cap = cap;
    a->head = c;
    a->used = 0;
    a->cap = cap;
  }
  void *p = a->head->data + a->used;
  a->used += need;
  memset(p, 0, need);
  return p;
}

void *fg_arena_dup(fg_arena *a, const void *src, size_t bytes) {
  void *p = fg_arena_alloc(a, bytes);
  if (p && bytes) memcpy(p, src, bytes);
  return p;
}

char *fg_arena_strdup(fg_arena *a, const char *s) {
  return fg_arena_dup(a, s, strlen(s) + 1);
}

void fg_arena_free(fg_arena *a) {
  for (fg_arena_chunk *c = a->head, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  fg_arena_init(a);
}
