/* Fuzz target: the response header handling of csrc/http.c (the header
 * callback's 1xx/size logic, unfolding of obsolete line folding, splitting
 * into headers and header_list). These functions are static, so this file
 * includes http.c itself and is linked with the other core files.
 * Input: the raw header block as a server would send it; it is handed to
 * the header callback line by line, as libcurl does. */
#include "../csrc/http.c"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_state();
  xfer x;
  size_t at = 0;
  memset(&x, 0, sizeof x);
  x.max_body = 1024;
  while (at < size) {
    const uint8_t *eol = (const uint8_t *)memchr(data + at, '\n', size - at);
    size_t n = eol != NULL ? (size_t)(eol - (data + at)) + 1 : size - at;
    /* libcurl hands a copy it owns; so do we */
    char *line = (char *)malloc(n);
    size_t took;
    FUZZ_CHECK(line != NULL, "malloc");
    memcpy(line, data + at, n);
    took = on_header(line, 1, n, &x);
    free(line);
    if (took != n) break;          /* too large: the transfer fails there */
    at += n;
  }
  FUZZ_CHECK(x.head.len <= MAX_HEADER_BYTES, "header block stays under the cap");
  if (!x.too_large) {
    int i, n;
    lua_newtable(L);
    push_headers(L, &x);
    lua_getfield(L, -1, "header_list");
    n = (int)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
      size_t nl, vl;
      const char *name, *value;
      lua_rawgeti(L, -1, i);
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      name = lua_tolstring(L, -2, &nl);
      value = lua_tolstring(L, -1, &vl);
      FUZZ_CHECK(name != NULL && nl > 0 && memchr(name, '\n', nl) == NULL, "a name is one line");
      FUZZ_CHECK(memchr(name, ':', nl) == NULL, "a name has no colon");
      FUZZ_CHECK(value != NULL && memchr(value, '\n', vl) == NULL, "a value is one line");
      lua_pop(L, 3);
    }
  }
  membuf_free(&x.head);
  membuf_free(&x.body);
  fuzz_done(L);
  return 0;
}
