/* Safetensors: byte-exact agreement with the reference implementation's own test vectors,
 * round trips, atomic replacement (a writer killed mid-write, a failed write), and every
 * header validation error. */
#include <math.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "core/formats/safetensors.h"
#include "io_helpers.h"

TestSuite(safetensors, .init = io_setup, .fini = io_teardown);

static void st_assert_file(const char *path, const void *want, size_t want_len) {
  size_t len;
  uint8_t *got = io_read(path, &len);
  cr_assert_eq(len, want_len, "file is %zu bytes, expected %zu", len, want_len);
  for (size_t i = 0; i < len; i++)
    cr_assert_eq(got[i], ((const uint8_t *)want)[i], "byte %zu: 0x%02x, expected 0x%02x", i, got[i],
                 ((const uint8_t *)want)[i]);
  free(got);
}

/* 8-byte little-endian length + header text + data, as a reference serializer lays it out. */
static size_t st_bytes(uint8_t *out, const char *header, const void *data, size_t data_len) {
  size_t n = strlen(header);
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)n >> (8 * i));
  memcpy(out + 8, header, n);
  if (data_len) memcpy(out + 8 + n, data, data_len);
  return 8 + n + data_len;
}

static fg_tensor *st_f32(fg_shape s, const float *v) {
  fg_tensor *t;
  cr_assert_eq(fg_tensor_from_data(&t, FG_F32, &s, v, NULL), FG_OK);
  return t;
}

/* The vectors of the reference's tests (safetensors/src/tensor.rs: test_serialization,
 * test_serialization_forced_alignement, test_empty): our writer must produce the same bytes. */
Test(safetensors, writer_matches_reference_bytes) {
  float v[6] = {0, 1, 2, 3, 4, 5};
  uint8_t want[256];
  fg_err e;
  fg_tensor *t = st_f32(fg_shape3(1, 2, 3), v);
  fg_safetensors_item item = {.name = "attn.0", .tensor = t};
  cr_assert_eq(fg_safetensors_write(io_path("a.st"), &item, 1, NULL, 0, &e), FG_OK, "%s", e.msg);
  size_t len = st_bytes(want,
                        "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":"
                        "[0,24]}}",
                        v, sizeof v);
  cr_assert_eq(want[0], 64);
  st_assert_file(io_path("a.st"), want, len);
  fg_tensor_free(t);

  t = st_f32(fg_shape4(1, 1, 2, 3), v);
  item = (fg_safetensors_item){.name = "attn0", .tensor = t};
  cr_assert_eq(fg_safetensors_write(io_path("b.st"), &item, 1, NULL, 0, &e), FG_OK, "%s", e.msg);
  len = st_bytes(want,
                 "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":"
                 "[0,24]}}       ",
                 v, sizeof v);
  cr_assert_eq(want[0], 72, "padded to a multiple of 8");
  st_assert_file(io_path("b.st"), want, len);
  fg_tensor_free(t);

  cr_assert_eq(fg_safetensors_write(io_path("c.st"), NULL, 0, NULL, 0, &e), FG_OK, "%s", e.msg);
  len = st_bytes(want, "{}      ", NULL, 0);
  st_assert_file(io_path("c.st"), want, len);

  fg_safetensors_kv kv = {"framework", "pt"};
  cr_assert_eq(fg_safetensors_write(io_path("d.st"), NULL, 0, &kv, 1, &e), FG_OK, "%s", e.msg);
  len = st_bytes(want, "{\"__metadata__\":{\"framework\":\"pt\"}}     ", NULL, 0);
  cr_assert_eq(want[0], 40);
  st_assert_file(io_path("d.st"), want, len);
}

/* Files from the reference's Python tests (bindings/python/tests/test_simple.py): unpadded
 * headers, I32 data, metadata. */
Test(safetensors, reader_accepts_reference_files) {
  uint8_t file[256];
  int32_t data[4] = {1, 2, 3, 4};
  size_t len = st_bytes(file,
                        "{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":"
                        "[0,16]}}",
                        data, sizeof data);
  cr_assert_eq(file[0], '<');
  io_write(io_path("t.st"), file, len);
  fg_safetensors *f;
  fg_err e;
  cr_assert_eq(fg_safetensors_open(&f, io_path("t.st"), &e), FG_OK, "%s", e.msg);
  const fg_safetensors_info *info = fg_safetensors_find(f, "test");
  cr_assert_not_null(info);
  cr_assert_str_eq(info->dtype, "I32");
  cr_assert(info->ndim == 2 && info->dims[0] == 2 && info->dims[1] == 2 && info->nbytes == 16);
  int32_t back[4];
  cr_assert_eq(fg_safetensors_read_raw(f, "test", back, sizeof back, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(memcmp(back, data, sizeof data), 0);
  fg_tensor *t;
  io_assert_error(fg_safetensors_get(&t, f, "test", &e), FG_E_DTYPE, e, io_path("t.st"),
                  "tensor 'test' has dtype I32");
  cr_assert_eq(fg_safetensors_read_raw(f, "test", back, 8, &e), FG_E_MISUSE);
  io_assert_error(fg_safetensors_get(&t, f, "nope", &e), FG_E_NOTFOUND, e, io_path("t.st"),
                  "no tensor named 'nope'");
  cr_assert_null(fg_safetensors_meta(f, "framework"));
  fg_safetensors_close(f);

  len = st_bytes(file,
                 "{\"__metadata__\":{\"framework\":\"pt\"},\"test1\":{\"dtype\":\"I32\","
                 "\"shape\":[2,2],\"data_offsets\":[0,16]}}       ",
                 data, sizeof data);
  cr_assert_eq(file[0], 'f');
  io_write(io_path("m.st"), file, len);
  cr_assert_eq(fg_safetensors_open(&f, io_path("m.st"), &e), FG_OK, "%s", e.msg);
  cr_assert_str_eq(fg_safetensors_meta(f, "framework"), "pt");
  cr_assert_eq(fg_safetensors_meta_count(f), 1);
  cr_assert_eq(fg_safetensors_count(f), 1);
  cr_assert_str_eq(fg_safetensors_entry(f, 0)->name, "test1");
  fg_safetensors_close(f);
}

Test(safetensors, round_trip) {
  fg_err e;
  fg_tensor *w, *b, *wt, *rows, *empty, *scalar;
  fg_shape s = fg_shape3(2, 3, 4);
  cr_assert_eq(fg_tensor_new(&w, FG_F32, &s, NULL), FG_OK);
  for (int i = 0; i < 24; i++) fg_tensor_set(w, i, sin(i) * 1e3);
  s = fg_shape1(5);
  cr_assert_eq(fg_tensor_new(&b, FG_F64, &s, NULL), FG_OK);
  for (int i = 0; i < 5; i++) fg_tensor_set(b, i, 1.0 / (i + 3));
  int perm[3] = {2, 0, 1};
  cr_assert_eq(fg_tensor_permute(&wt, w, perm, NULL), FG_OK);  /* a strided view */
  cr_assert_eq(fg_tensor_slice0(&rows, w, 1, 2, NULL), FG_OK); /* an offset view */
  s = fg_shape2(0, 3);
  cr_assert_eq(fg_tensor_new(&empty, FG_F32, &s, NULL), FG_OK);
  s = fg_shape0();
  cr_assert_eq(fg_tensor_new(&scalar, FG_F64, &s, NULL), FG_OK);
  fg_tensor_set(scalar, 0, -2.5);
  int64_t counters[3] = {INT64_MIN, 7, INT64_MAX};
  uint8_t flags[2] = {1, 254};
  fg_safetensors_item items[] = {
      {.name = "w", .tensor = w},
      {.name = "b", .tensor = b},
      {.name = "wt", .tensor = wt},
      {.name = "rows", .tensor = rows},
      {.name = "empty", .tensor = empty},
      {.name = "scalar", .tensor = scalar},
      {.name = "step", .dtype = "I64", .shape = fg_shape1(3), .data = counters},
      {.name = "flags", .dtype = "U8", .shape = fg_shape1(2), .data = flags},
      {.name = "layer.é/\"q\"", .tensor = b},
  };
  fg_safetensors_kv meta[] = {
      {"spec", "layer affine \"x\"\n\tback\\slash é ∑"}, {"step", "1234"}, {"empty", ""}};
  size_t n_items = sizeof items / sizeof *items;
  cr_assert_eq(fg_safetensors_write(io_path("ck.st"), items, n_items, meta, 3, &e), FG_OK, "%s",
               e.msg);
  fg_safetensors *f;
  cr_assert_eq(fg_safetensors_open(&f, io_path("ck.st"), &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_safetensors_count(f), n_items);
  for (size_t i = 0; i < n_items; i++) {
    if (!items[i].tensor) continue;
    fg_tensor *t;
    cr_assert_eq(fg_safetensors_get(&t, f, items[i].name, &e), FG_OK, "%s", e.msg);
    cr_assert_eq(t->dtype, items[i].tensor->dtype);
    cr_assert(fg_shape_equal(&t->shape, &items[i].tensor->shape), "%s", items[i].name);
    for (int64_t k = 0; k < fg_tensor_numel(t); k++)
      cr_assert_eq(fg_tensor_get(t, k), fg_tensor_get(items[i].tensor, k), "%s[%lld]",
                   items[i].name, (long long)k);
    fg_tensor_free(t);
  }
  int64_t c2[3];
  uint8_t f2[2];
  cr_assert_eq(fg_safetensors_read_raw(f, "step", c2, sizeof c2, &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_safetensors_read_raw(f, "flags", f2, sizeof f2, &e), FG_OK, "%s", e.msg);
  cr_assert(memcmp(c2, counters, sizeof c2) == 0 && f2[1] == 254);
  for (int i = 0; i < 3; i++) cr_assert_str_eq(fg_safetensors_meta(f, meta[i].key), meta[i].value);
  cr_assert_str_eq(fg_safetensors_meta_key(f, 0), "empty", "keys in order");
  cr_assert_str_eq(fg_safetensors_entry(f, 0)->name, "b", "entries in name order");
  fg_safetensors_close(f);
  fg_tensor_free(w), fg_tensor_free(b), fg_tensor_free(wt), fg_tensor_free(rows);
  fg_tensor_free(empty), fg_tensor_free(scalar);
}

/* Entries sorted by descending dtype size then name, as the reference writes them, so every
 * tensor starts at a file offset aligned to its element size. */
Test(safetensors, layout_is_aligned) {
  uint8_t u8[3] = {1, 2, 3};
  float f32[1] = {1};
  double f64[1] = {2};
  fg_tensor *a = st_f32(fg_shape1(1), f32), *d;
  fg_shape s1 = fg_shape1(1);
  cr_assert_eq(fg_tensor_from_data(&d, FG_F64, &s1, f64, NULL), FG_OK);
  fg_safetensors_item items[] = {{.name = "u", .dtype = "U8", .shape = fg_shape1(3), .data = u8},
                                 {.name = "a", .tensor = a},
                                 {.name = "d", .tensor = d}};
  fg_err e;
  cr_assert_eq(fg_safetensors_write(io_path("al.st"), items, 3, NULL, 0, &e), FG_OK, "%s", e.msg);
  size_t len;
  uint8_t *raw = io_read(io_path("al.st"), &len);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | raw[i];
  cr_assert_eq(n % 8, 0);
  const char *want =
      "{\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
      "\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[12,15]}}";
  cr_assert_eq(memcmp(raw + 8, want, strlen(want)), 0, "header: %.*s", (int)n, raw + 8);
  free(raw);
  fg_tensor_free(a);
  fg_tensor_free(d);
}

static void st_write_one(const char *path, float value) {
  float v[4] = {value, value + 1, value + 2, value + 3};
  fg_tensor *t = st_f32(fg_shape1(4), v);
  fg_safetensors_item item = {.name = "w", .tensor = t};
  fg_safetensors_kv kv = {"version", value == 1 ? "one" : "two"};
  fg_err e;
  cr_assert_eq(fg_safetensors_write(path, &item, 1, &kv, 1, &e), FG_OK, "%s", e.msg);
  fg_tensor_free(t);
}

static void st_assert_holds(const char *path, float value) {
  fg_safetensors *f;
  fg_err e;
  cr_assert_eq(fg_safetensors_open(&f, path, &e), FG_OK, "%s", e.msg);
  fg_tensor *t;
  cr_assert_eq(fg_safetensors_get(&t, f, "w", &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_tensor_get(t, 3), value + 3.0);
  fg_tensor_free(t);
  fg_safetensors_close(f);
}

/* A child that writes a 4 MB checkpoint with its file size limited to 64 KiB: it is killed
 * by SIGXFSZ in the middle of the write, like a process killed at a random moment. */
static pid_t st_killed_writer(const char *path) {
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    struct rlimit core = {0, 0}, fsize = {65536, 65536};
    setrlimit(RLIMIT_CORE, &core);
    setrlimit(RLIMIT_FSIZE, &fsize);
    fg_tensor *big;
    fg_shape s = fg_shape1(1 << 20);
    if (fg_tensor_new(&big, FG_F32, &s, NULL) != FG_OK) _exit(2);
    fg_safetensors_item item = {.name = "w", .tensor = big};
    fg_safetensors_write(path, &item, 1, NULL, 0, NULL);
    _exit(3); /* not reached: the write is killed */
  }
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ, "killed mid-write (status %d)",
            status);
  return pid;
}

Test(safetensors, killed_mid_write_leaves_previous_file) {
  const char *path = io_path("model.safetensors");
  st_write_one(path, 1);
  pid_t pid = st_killed_writer(path);
  char tmp[512];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)pid);
  struct stat sb;
  cr_assert_eq(stat(tmp, &sb), 0, "the killed writer's partial file is left behind");
  cr_assert_leq(sb.st_size, 65536);
  st_assert_holds(path, 1); /* the previous checkpoint, whole, unaffected by the leftover */
  st_write_one(path, 2);    /* and the next write replaces it */
  st_assert_holds(path, 2);
}

Test(safetensors, failed_write_keeps_previous_file) {
  const char *path = io_path("model.safetensors");
  st_write_one(path, 1);
  /* a write that fails with EFBIG (SIGXFSZ ignored): an error, the temporary file removed */
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit fsize = {65536, 65536};
    setrlimit(RLIMIT_FSIZE, &fsize);
    fg_tensor *big;
    fg_shape s = fg_shape1(1 << 20);
    if (fg_tensor_new(&big, FG_F32, &s, NULL) != FG_OK) _exit(2);
    fg_safetensors_item item = {.name = "w", .tensor = big};
    fg_err e;
    fg_status st = fg_safetensors_write(path, &item, 1, NULL, 0, &e);
    fg_tensor_free(big);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    bool ok = st == FG_E_IO && strstr(e.msg, path) && strstr(e.msg, "File too large") &&
              access(tmp, F_OK) != 0;
    _exit(ok ? 0 : 4);
  }
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
  st_assert_holds(path, 1);
  /* a destination that is a directory: rename fails, the directory stays as it was */
  char dir[512];
  snprintf(dir, sizeof dir, "%s", io_path("adir"));
  cr_assert_eq(mkdir(dir, 0755), 0);
  io_write(io_path("adir/keep"), "x", 1);
  fg_tensor *t = st_f32(fg_shape1(1), (float[]){1});
  fg_safetensors_item item = {.name = "w", .tensor = t};
  fg_err e;
  io_assert_error(fg_safetensors_write(dir, &item, 1, NULL, 0, &e), FG_E_IO, e, dir,
                  "cannot replace it: Is a directory (the previous file is untouched)");
  cr_assert_eq(access(io_path("adir/keep"), F_OK), 0);
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
  cr_assert_neq(access(tmp, F_OK), 0, "temporary file removed");
  /* a directory that does not exist */
  io_assert_error(fg_safetensors_write(io_path("no/such/file.st"), &item, 1, NULL, 0, &e), FG_E_IO,
                  e, io_path("no/such/file.st"), "cannot create the temporary file");
  fg_tensor_free(t);
}

Test(safetensors, writer_rejects_bad_input) {
  fg_tensor *t = st_f32(fg_shape1(1), (float[]){1});
  fg_err e;
  const char *p = io_path("w.st");
  fg_safetensors_item two[] = {{.name = "a", .tensor = t}, {.name = "a", .tensor = t}};
  io_assert_error(fg_safetensors_write(p, two, 2, NULL, 0, &e), FG_E_MISUSE, e, p,
                  "tensor name 'a' is given twice");
  fg_safetensors_item meta_name = {.name = "__metadata__", .tensor = t};
  io_assert_error(fg_safetensors_write(p, &meta_name, 1, NULL, 0, &e), FG_E_MISUSE, e, p,
                  "'__metadata__' cannot name a tensor");
  fg_safetensors_item bad_dtype = {.name = "x", .dtype = "Q7", .shape = fg_shape1(1), .data = "x"};
  io_assert_error(fg_safetensors_write(p, &bad_dtype, 1, NULL, 0, &e), FG_E_MISUSE, e, p,
                  "unknown dtype 'Q7'");
  fg_safetensors_item bad_utf8 = {.name = "\xff\xfe", .tensor = t};
  io_assert_error(fg_safetensors_write(p, &bad_utf8, 1, NULL, 0, &e), FG_E_MISUSE, e, p,
                  "not valid UTF-8");
  fg_safetensors_kv kv[] = {{"k", "1"}, {"k", "2"}};
  io_assert_error(fg_safetensors_write(p, NULL, 0, kv, 2, &e), FG_E_MISUSE, e, p,
                  "metadata key 'k' is given twice");
  cr_assert_neq(access(p, F_OK), 0, "nothing written");
  fg_tensor_free(t);
}

/* ---- reader validation: one malformed file per rule ---------------------------------------- */

/* Writes length + header + data_len bytes (+ `extra` trailing bytes, or minus when negative)
 * and expects open to fail with the needle in the message. */
static void st_expect_bad(const char *header, size_t data_len, const char *needle) {
  static uint8_t file[4096];
  static const uint8_t zeros[1024];
  size_t len = st_bytes(file, header, zeros, data_len);
  const char *p = io_path("bad.safetensors");
  io_write(p, file, len);
  fg_safetensors *f = (fg_safetensors *)1;
  fg_err e;
  fg_status st = fg_safetensors_open(&f, p, &e);
  cr_assert_null(f);
  io_assert_error(st, FG_E_FORMAT, e, p, needle);
}

#define E(name, dtype, shape, offs) \
  "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

Test(safetensors, rejects_bad_lengths) {
  const char *p = io_path("short.st");
  io_write(p, "\x02\0\0", 3);
  fg_safetensors *f;
  fg_err e;
  io_assert_error(fg_safetensors_open(&f, p, &e), FG_E_FORMAT, e, p, "3 bytes is too short");
  io_write(p, "\x01\xe1\xf5\x05\0\0\0\0{}", 10); /* 100000001 */
  io_assert_error(fg_safetensors_open(&f, p, &e), FG_E_FORMAT, e, p,
                  "header length 100000001 exceeds the 100000000-byte limit");
  io_write(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
  io_assert_error(fg_safetensors_open(&f, p, &e), FG_E_FORMAT, e, p, "exceeds");
  io_write(p, "\x40\0\0\0\0\0\0\0{}", 10);
  io_assert_error(fg_safetensors_open(&f, p, &e), FG_E_FORMAT, e, p,
                  "header length 64 runs past the end of the 10-byte file");
  io_assert_error(fg_safetensors_open(&f, io_path("absent"), &e), FG_E_IO, e, io_path("absent"),
                  "cannot open");
  io_assert_error(fg_safetensors_open(&f, io_dir, &e), FG_E_IO, e, io_dir, "not a regular file");
}

Test(safetensors, rejects_bad_header_text) {
  st_expect_bad("{\"a\xff\":1}", 0, "header is not valid UTF-8 (byte 3");
  st_expect_bad("{\"\xed\xa0\x80\":1}", 0, "not valid UTF-8"); /* an encoded surrogate */
  st_expect_bad("{\"\xc0\xaf\":1}", 0, "not valid UTF-8");     /* an overlong '/' */
  st_expect_bad(" {}", 0, "does not start with '{'");
  st_expect_bad("[]", 0, "does not start with '{'");
  st_expect_bad("{\"a\":", 0, "header is not valid JSON");
  st_expect_bad("{\"a\" 1}", 0, "header is not valid JSON");
  st_expect_bad("{}  x", 0, "header has text after its JSON object (byte 4)");
  st_expect_bad("{}{}", 0, "text after its JSON object");
  st_expect_bad("{\"a\x01\":{}}", 0, "raw control character 0x01");
  st_expect_bad("{\"a\\u0000b\":{}}", 0, "escaped NUL");
}

Test(safetensors, valid_hand_built_file_opens) {
  /* the control for the cases below: in any order, zero-size entries anywhere */
  static uint8_t file[512];
  size_t len = st_bytes(file,
                        "{" E("b", "F32", "[1]", "[4,8]") "," E("z", "F64", "[0,7]", "[4,4]") "," E(
                            "a", "F32", "[1]", "[0,4]") ",\"__metadata__\":{}}  \n ",
                        "\0\0\x80\x3f\0\0\0\x40", 8);
  io_write(io_path("ok.st"), file, len);
  fg_safetensors *f;
  fg_err e;
  cr_assert_eq(fg_safetensors_open(&f, io_path("ok.st"), &e), FG_OK, "%s", e.msg);
  fg_tensor *t;
  cr_assert_eq(fg_safetensors_get(&t, f, "b", &e), FG_OK, "%s", e.msg);
  cr_assert_eq(fg_tensor_get(t, 0), 2.0);
  fg_tensor_free(t);
  cr_assert_eq(fg_safetensors_get(&t, f, "z", &e), FG_OK, "%s", e.msg);
  cr_assert(t->shape.ndim == 2 && t->shape.d[1] == 7 && fg_tensor_numel(t) == 0);
  fg_tensor_free(t);
  cr_assert_eq(fg_safetensors_meta_count(f), 0);
  fg_safetensors_close(f);
}

Test(safetensors, rejects_bad_entries) {
  st_expect_bad("{\"w\":5}", 0, "tensor 'w': the entry is not a JSON object");
  st_expect_bad("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': no 'dtype'");
  st_expect_bad("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w': no 'shape'");
  st_expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w': no 'data_offsets'");
  st_expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
                "tensor 'w': unexpected key 'x'");
  st_expect_bad(
      "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
      "tensor 'w': key 'dtype' appears twice");
  st_expect_bad("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                "tensor 'w': dtype is not a string");
  st_expect_bad("{" E("w", "F128", "[1]", "[0,16]") "}", 16, "tensor 'w': unknown dtype 'F128'");
  st_expect_bad("{" E("w", "F32", "{}", "[0,4]") "}", 4, "tensor 'w': shape is not an array");
  st_expect_bad("{" E("w", "F32", "[1,-1]", "[0,4]") "}", 4,
                "tensor 'w': shape[1] is not a non-negative integer");
  st_expect_bad("{" E("w", "F32", "[1.5]", "[0,4]") "}", 4,
                "shape[0] is not a non-negative integer");
  st_expect_bad("{" E("w", "F32", "[\"1\"]", "[0,4]") "}", 4, "shape[0] is not");
  st_expect_bad("{" E("w", "F32", "[1]", "[0]") "}", 4,
                "tensor 'w': data_offsets is not an array of two non-negative integers");
  st_expect_bad("{" E("w", "F32", "[1]", "[0,4,8]") "}", 4, "data_offsets is not an array of two");
  st_expect_bad("{" E("w", "F32", "[1]", "[0,1e300]") "}", 4,
                "data_offsets is not an array of two");
  st_expect_bad("{" E("w", "F32", "[1]", "[4,0]") "}", 4,
                "tensor 'w': data_offsets [4, 0] end before they begin");
}

Test(safetensors, rejects_sizes_that_disagree) {
  st_expect_bad("{" E("w", "F32", "[2]", "[0,4]") "}", 4,
                "tensor 'w': shape [2] of F32 is 8 bytes but data_offsets [0, 4] span 4");
  st_expect_bad("{" E("w", "F64", "[2,3]", "[0,47]") "}", 47, "shape [2, 3] of F64 is 48 bytes");
  st_expect_bad("{" E("w", "U8", "[4294967296,4294967296,4294967296]", "[0,4]") "}", 4,
                "tensor 'w': shape x dtype size overflows 64 bits");
  st_expect_bad("{" E("w", "I64", "[4294967296,4294967296]", "[0,4]") "}", 4, "overflows 64 bits");
  /* like the reference, the product overflows before the 0 is reached */
  st_expect_bad("{" E("w", "U8", "[4294967296,4294967296,4294967296,0]", "[0,0]") "}", 0,
                "overflows 64 bits");
  /* no elements, but the other sizes' product (the strides) overflows */
  st_expect_bad("{" E("w", "F32", "[0,9007199254740992,9007199254740992]", "[0,0]") "}", 0,
                "overflows 64 bits");
}

Test(safetensors, rejects_offsets_that_do_not_tile) {
  st_expect_bad("{" E("a", "F32", "[1]", "[0,4]") "," E("b", "F32", "[1]", "[8,12]") "}", 12,
                "tensor 'b': data_offsets [8, 12] leave a gap: bytes [4, 8) belong to no tensor");
  st_expect_bad("{" E("a", "F32", "[1]", "[4,8]") "}", 8,
                "tensor 'a': data_offsets [4, 8] leave a gap: bytes [0, 4)");
  st_expect_bad("{" E("a", "F32", "[2]", "[0,8]") "," E("b", "F32", "[2]", "[4,12]") "}", 12,
                "tensor 'b': data_offsets [4, 12] overlap tensor 'a', which ends at 8");
  st_expect_bad("{" E("a", "F32", "[1]", "[0,4]") "," E("b", "F32", "[1]", "[0,4]") "}", 4,
                "overlap tensor");
  st_expect_bad(
      "{" E("a", "F32", "[1]", "[0,4]") "}", 5,
      "the tensors cover 4 bytes but the data after the header is 5 bytes (trailing bytes)");
  st_expect_bad(
      "{" E("a", "F32", "[2]", "[0,8]") "}", 7,
      "the tensors cover 8 bytes but the data after the header is 7 bytes (the file is truncated)");
  st_expect_bad("{}", 1, "the tensors cover 0 bytes but the data after the header is 1 bytes");
}

Test(safetensors, rejects_duplicates_and_bad_metadata) {
  st_expect_bad("{" E("a", "F32", "[1]", "[0,4]") "," E("a", "F32", "[1]", "[4,8]") "}", 8,
                "tensor name 'a' appears twice");
  st_expect_bad("{\"__metadata__\":[]}", 0, "__metadata__ is not a JSON object");
  st_expect_bad("{\"__metadata__\":{\"step\":3}}", 0, "__metadata__ 'step' is not a string");
  st_expect_bad("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0,
                "__metadata__ key 'k' appears twice");
  st_expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice");
}

/* Python's json and struct modules (always present: meson runs on Python) decode the file as
 * safetensors' format description says, independently of cJSON. */
Test(safetensors, python_json_reads_our_file) {
  if (system("/usr/bin/python3 -c 'import json, struct' 2>/dev/null") != 0)
    io_skip("no /usr/bin/python3");
  float v[6] = {0.5f, -1, 2, 3, 4, 5};
  fg_tensor *t = st_f32(fg_shape2(2, 3), v);
  fg_safetensors_item item = {.name = "layer.0/w", .tensor = t};
  fg_safetensors_kv kv = {"spec", "glow \"K\"=4\n"};
  fg_err e;
  cr_assert_eq(fg_safetensors_write(io_path("py.st"), &item, 1, &kv, 1, &e), FG_OK, "%s", e.msg);
  const char *script =
      "import json, struct, sys\n"
      "b = open(sys.argv[1], 'rb').read()\n"
      "n, = struct.unpack('<Q', b[:8])\n"
      "h = json.loads(b[8:8 + n].decode('utf-8'))\n"
      "assert h.pop('__metadata__') == {'spec': 'glow \"K\"=4\\n'}, 'metadata'\n"
      "w = h.pop('layer.0/w')\n"
      "assert w['dtype'] == 'F32' and w['shape'] == [2, 3] and not h, w\n"
      "s, t = w['data_offsets']\n"
      "assert list(struct.unpack('<6f', b[8 + n + s:8 + n + t])) == [0.5, -1, 2, 3, 4, 5]\n"
      "assert 8 + n + t == len(b)\n";
  io_write(io_path("check.py"), script, strlen(script));
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", io_path("check.py"), io_path("py.st"));
  cr_assert_eq(system(cmd), 0, "python decoded the file");
  fg_tensor_free(t);
}

/* The real thing, where the safetensors Python package is installed (Debian 12 has none). */
Test(safetensors, python_safetensors_reads_our_file) {
  if (system("/usr/bin/python3 -c 'import safetensors.numpy' 2>/dev/null") != 0)
    io_skip("the safetensors Python package is not installed");
  float v[6] = {0.5f, -1, 2, 3, 4, 5};
  fg_tensor *t = st_f32(fg_shape2(2, 3), v);
  int64_t step[1] = {123};
  fg_safetensors_item items[] = {
      {.name = "w", .tensor = t},
      {.name = "step", .dtype = "I64", .shape = fg_shape1(1), .data = step}};
  fg_safetensors_kv kv = {"format", "flowgrad"};
  fg_err e;
  cr_assert_eq(fg_safetensors_write(io_path("py.st"), items, 2, &kv, 1, &e), FG_OK, "%s", e.msg);
  const char *script =
      "import sys\n"
      "from safetensors.numpy import load_file\n"
      "from safetensors import safe_open\n"
      "d = load_file(sys.argv[1])\n"
      "assert d['w'].shape == (2, 3) and d['w'].tolist()[0] == [0.5, -1, 2]\n"
      "assert d['step'].tolist() == [123]\n"
      "with safe_open(sys.argv[1], 'np') as f:\n"
      "    assert f.metadata() == {'format': 'flowgrad'}\n";
  io_write(io_path("check.py"), script, strlen(script));
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", io_path("check.py"), io_path("py.st"));
  cr_assert_eq(system(cmd), 0, "safetensors loaded the file");
  fg_tensor_free(t);
}
