/* Internal: UTF-8 validation, for text that goes into or comes out of files that must be UTF-8
 * (safetensors headers, tensor names, metadata). */
#ifndef FG_UTF8_H
#define FG_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Whether s[0..n) is valid UTF-8 (overlong forms, surrogates and code points past U+10FFFF are
 * invalid, as in Rust's str::from_utf8); when it is not, *bad (if not NULL) is the offset of
 * the first invalid byte. */
bool fg_utf8_valid(const char *s, size_t n, size_t *bad);

#endif
