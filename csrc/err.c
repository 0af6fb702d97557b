/* err.c: turns OpenSSL failures into Lua values, and builds metatables. */
#include <string.h>
#include <openssl/err.h>
#include "core.h"

int xs2a_pushsslerror(lua_State *L, const char *op) {
  luaL_Buffer b;
  unsigned long e;
  int first = 1;
  char buf[256];
  luaL_buffinit(L, &b);
  luaL_addstring(&b, op);
  luaL_addstring(&b, ": ");
  while ((e = ERR_get_error()) != 0) {
    if (!first) luaL_addstring(&b, "; ");
    ERR_error_string_n(e, buf, sizeof buf);
    luaL_addstring(&b, buf);
    first = 0;
  }
  if (first) luaL_addstring(&b, "unknown OpenSSL error");
  luaL_pushresult(&b);           /* msg */
  lua_pushnil(L);                /* msg, nil */
  lua_insert(L, -2);             /* nil, msg */
  lua_pushliteral(L, "ssl");     /* nil, msg, code */
  return 3;
}

int xs2a_pusherror(lua_State *L, const char *op, const char *msg, const char *code) {
  ERR_clear_error();
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", op, msg);
  if (code == NULL) return 2;
  lua_pushstring(L, code);
  return 3;
}

void xs2a_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
                   const luaL_Reg *meta) {
  luaL_newmetatable(L, name);      /* mt */
  luaL_setfuncs(L, meta, 0);
  lua_newtable(L);                 /* mt, methods */
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");  /* mt */
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
}
