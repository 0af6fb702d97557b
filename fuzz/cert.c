/* Fuzz target: certificate parsing and the PSD2 QCStatement reader
 * (core.cert_info, the path of identity:info()), and public key loading
 * for signature checks (core.verify, core.cert_issued_by). Input: PEM or
 * DER bytes. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_state();

  fuzz_fn(L, "cert_info");
  lua_pushlstring(L, (const char *)data, size);
  if (fuzz_call(L, 1, 2) == LUA_OK && lua_istable(L, -2)) {
    /* a parsed certificate: its info must have the documented shape */
    lua_getfield(L, -2, "roles");
    FUZZ_CHECK(lua_istable(L, -1), "info.roles is a table");
    lua_getfield(L, -3, "fingerprint");
    FUZZ_CHECK(lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) == 64, "info.fingerprint is 64 hex");
    lua_getfield(L, -4, "serial");
    FUZZ_CHECK(lua_type(L, -1) == LUA_TSTRING, "info.serial is a string");
    lua_getfield(L, -5, "expired");
    FUZZ_CHECK(lua_isboolean(L, -1), "info.expired is a boolean");
  }
  lua_settop(L, 0);

  fuzz_fn(L, "verify");
  lua_pushlstring(L, (const char *)data, size);
  lua_pushliteral(L, "data");
  lua_pushliteral(L, "not a signature");
  (void)fuzz_call(L, 3, 2);
  lua_settop(L, 0);

  fuzz_fn(L, "cert_issued_by");
  lua_pushlstring(L, (const char *)data, size);
  lua_pushlstring(L, (const char *)data, size);
  (void)fuzz_call(L, 2, 2);

  fuzz_done(L);
  return 0;
}
