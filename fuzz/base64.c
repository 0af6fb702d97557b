/* Fuzz target: base64 and base64url decoding (core.b64decode,
 * core.b64url_decode; both strict and canonical) and the encoders. */
#include "fuzz.h"

/* dec(s) must either fail with nil, message or give bytes that encode back to s */
static void decode_roundtrip(lua_State *L, const char *dec, const char *enc,
                             const uint8_t *data, size_t size) {
  size_t n;
  const char *back;
  fuzz_fn(L, dec);
  lua_pushlstring(L, (const char *)data, size);
  FUZZ_CHECK(fuzz_call(L, 1, 2) == LUA_OK, "decoding never raises on a string");
  if (lua_isnil(L, -2)) {
    FUZZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "a failed decode says why");
    lua_settop(L, 0);
    return;
  }
  fuzz_fn(L, enc);
  lua_pushvalue(L, -3);
  FUZZ_CHECK(fuzz_call(L, 1, 1) == LUA_OK, "encoding never raises");
  back = lua_tolstring(L, -1, &n);
  FUZZ_CHECK(back != NULL && n == size && memcmp(back, data, size) == 0,
             "accepted input is canonical: encode(decode(s)) == s");
  lua_settop(L, 0);
}

/* enc then dec gives the bytes back */
static void encode_roundtrip(lua_State *L, const char *enc, const char *dec,
                             const uint8_t *data, size_t size) {
  size_t n;
  const char *back;
  fuzz_fn(L, dec);
  fuzz_fn(L, enc);
  lua_pushlstring(L, (const char *)data, size);
  FUZZ_CHECK(fuzz_call(L, 1, 1) == LUA_OK, "encoding never raises");
  FUZZ_CHECK(fuzz_call(L, 1, 1) == LUA_OK, "decoding never raises");
  back = lua_tolstring(L, -1, &n);
  FUZZ_CHECK(back != NULL && n == size && memcmp(back, data, size) == 0,
             "decode(encode(b)) == b");
  lua_settop(L, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_state();
  decode_roundtrip(L, "b64decode", "b64encode", data, size);
  decode_roundtrip(L, "b64url_decode", "b64url_encode", data, size);
  encode_roundtrip(L, "b64encode", "b64decode", data, size);
  encode_roundtrip(L, "b64url_encode", "b64url_decode", data, size);
  fuzz_done(L);
  return 0;
}
