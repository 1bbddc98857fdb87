/* UTF-8 validation: what Rust's str::from_utf8 accepts, and the offset of the first bad byte. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/utf8.h"

static void assert_valid(const char *s) {
  size_t bad = 99;
  cr_assert(fg_utf8_valid(s, strlen(s), &bad), "'%s' is valid UTF-8", s);
}

static void assert_invalid(const char *s, size_t at) {
  size_t bad = 99;
  cr_assert_not(fg_utf8_valid(s, strlen(s), &bad), "'%s' is not valid UTF-8", s);
  cr_assert_eq(bad, at, "first bad byte of '%s' at %zu, reported %zu", s, at, bad);
}

Test(utf8, accepts_every_sequence_length) {
  assert_valid("");
  assert_valid("plain ascii");
  assert_valid("\xc3\xa9t\xc3\xa9");      /* 2 bytes: été */
  assert_valid("\xe2\x82\xac");           /* 3 bytes: the euro sign */
  assert_valid("\xf0\x9f\x98\x80");       /* 4 bytes: U+1F600 */
  assert_valid("\xf4\x8f\xbf\xbf");       /* U+10FFFF, the last code point */
  cr_assert(fg_utf8_valid("a\0b", 3, NULL), "NUL is a valid character");
}

Test(utf8, refuses_what_is_not_a_character) {
  assert_invalid("ab\x80", 2);            /* a continuation byte alone */
  assert_invalid("a\xc0\x80", 1);         /* overlong NUL */
  assert_invalid("\xe0\x80\xaf", 0);      /* overlong '/' */
  assert_invalid("x\xed\xa0\x80", 1);     /* a surrogate, U+D800 */
  assert_invalid("\xf4\x90\x80\x80", 0);  /* past U+10FFFF */
  assert_invalid("\xf8\x88\x80\x80\x80", 0); /* a five-byte form */
  assert_invalid("ok\xe2\x82", 2);        /* cut short */
  assert_invalid("\xc3(", 0);             /* a lead byte without its continuation */
}
