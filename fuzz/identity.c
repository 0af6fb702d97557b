/* Fuzz target: loading an identity from untrusted bytes (PKCS#12 DER, PEM
 * bundles with certificate and key, encrypted PEM keys, DER certificate +
 * DER key) through core.identity, then using what loaded.
 * Input: byte 0 picks the form, the rest is the data:
 *   0: { p12 = rest, passphrase = "test-passphrase" }
 *   1: { cert = rest, key = rest }            (one PEM bundle)
 *   2: { cert = rest, key = rest, passphrase = "test-passphrase" }
 *   3: bytes 1-2 = big-endian length n, { cert = next n bytes, key = the rest } */
#include "fuzz.h"

/* core.identity treats short text without NUL as a file name: the fuzzer
 * must not open files, so such values are skipped. */
static int would_open_file(const uint8_t *s, size_t n) {
  static const char tag[] = "-----BEGIN";
  size_t i;
  for (i = 0; i + sizeof tag - 1 <= n; i++)
    if (memcmp(s + i, tag, sizeof tag - 1) == 0) return 0;
  if (memchr(s, '\0', n) != NULL || n > 4096) return 0;
  return n > 0 && s[0] != 0x30;   /* 0x30... is DER unless such a file exists */
}

static void use(lua_State *L) {
  static const char *const methods[] = { "info", "cert_der", "cert_pem", "chain_der", NULL };
  int i;
  for (i = 0; methods[i] != NULL; i++) {
    lua_getfield(L, 1, methods[i]);
    lua_pushvalue(L, 1);
    FUZZ_CHECK(fuzz_call(L, 1, 1) == LUA_OK, "a loaded identity answers");
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "sign");
  lua_pushvalue(L, 1);
  lua_pushliteral(L, "data");
  FUZZ_CHECK(fuzz_call(L, 2, 1) == LUA_OK, "a loaded identity signs");
  lua_pop(L, 1);
  lua_getglobal(L, "tostring");
  lua_pushvalue(L, 1);
  FUZZ_CHECK(fuzz_call(L, 1, 1) == LUA_OK, "tostring works");
  lua_pop(L, 1);
  lua_getfield(L, 1, "close");
  lua_pushvalue(L, 1);
  FUZZ_CHECK(fuzz_call(L, 1, 0) == LUA_OK, "close works");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_state();
  const uint8_t *a, *b = NULL;
  size_t an, bn = 0;
  int mode;
  if (size < 1) return 0;
  mode = data[0] % 4;
  a = data + 1;
  an = size - 1;
  if (mode == 3) {
    size_t n;
    if (size < 3) return 0;
    n = ((size_t)data[1] << 8) | data[2];
    a = data + 3;
    an = size - 3;
    if (n > an) n = an;
    b = a + n;
    bn = an - n;
    an = n;
    if (would_open_file(b, bn)) return 0;
  }
  if (would_open_file(a, an)) return 0;

  fuzz_fn(L, "identity");
  lua_newtable(L);
  lua_pushlstring(L, (const char *)a, an);
  if (mode == 0) {
    lua_setfield(L, -2, "p12");
  } else if (mode == 3) {
    lua_setfield(L, -2, "cert");
    lua_pushlstring(L, (const char *)b, bn);
    lua_setfield(L, -2, "key");
  } else {
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "cert");
    lua_setfield(L, -2, "key");
  }
  if (mode == 0 || mode == 2) {
    lua_pushliteral(L, "test-passphrase");
    lua_setfield(L, -2, "passphrase");
  }
  FUZZ_CHECK(fuzz_call(L, 1, 3) == LUA_OK, "core.identity never raises on strings");
  if (lua_isuserdata(L, 1)) {
    lua_settop(L, 1);
    use(L);
  } else {
    FUZZ_CHECK(lua_isnil(L, 1) && lua_type(L, 2) == LUA_TSTRING && lua_type(L, 3) == LUA_TSTRING,
               "a failed load gives nil, message, code");
  }
  fuzz_done(L);
  return 0;
}
