/* core.c: luaopen_xs2a_core builds the private core table of lua-xs2a. */
#include "core.h"

int luaopen_xs2a_core(lua_State *L);

int luaopen_xs2a_core(lua_State *L) {
  lua_newtable(L);
  xs2a_identity_open(L);
  xs2a_crypto_open(L);
  xs2a_http_open(L);
  xs2a_time_open(L);
  xs2a_fs_open(L);
  xs2a_json_open(L);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  return 1;
}
