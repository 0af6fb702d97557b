/* compat.h: the one place that knows about Lua and OpenSSL versions. */
#ifndef XS2A_COMPAT_H
#define XS2A_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#if LUA_VERSION_NUM < 502
/* LuaJIT 2.1 (OpenResty flavour) reports 5.1. Some LuaJIT builds export a
 * few 5.2 functions and some do not; #ifdef cannot see a function, so we
 * always use our own versions under private names. */

#undef luaL_setfuncs
#define luaL_setfuncs(L, l, nup) xs2a_compat_setfuncs((L), (l), (nup))
static inline void xs2a_compat_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

#undef luaL_setmetatable
#define luaL_setmetatable(L, tn) xs2a_compat_setmetatable((L), (tn))
static inline void xs2a_compat_setmetatable(lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}

#undef luaL_testudata
#define luaL_testudata(L, i, tn) xs2a_compat_testudata((L), (i), (tn))
static inline void *xs2a_compat_testudata(lua_State *L, int i, const char *tname) {
  void *p = lua_touserdata(L, i);
  if (p == NULL || !lua_getmetatable(L, i)) return NULL;
  luaL_getmetatable(L, tname);
  if (!lua_rawequal(L, -1, -2)) p = NULL;
  lua_pop(L, 2);
  return p;
}

#undef luaL_newlib
#define luaL_newlib(L, l) (lua_newtable(L), luaL_setfuncs(L, l, 0))
#undef lua_rawlen
#define lua_rawlen(L, i) lua_objlen((L), (i))
#undef luaL_len
#define luaL_len(L, i) ((lua_Integer)lua_objlen((L), (i)))

/* 5.4 userdata with user values: on 5.1 we keep one table in the fenv. */
#undef lua_newuserdatauv
#define lua_newuserdatauv(L, sz, nuv) xs2a_compat_newuserdatauv((L), (sz), (nuv))
static inline void *xs2a_compat_newuserdatauv(lua_State *L, size_t sz, int nuv) {
  void *p = lua_newuserdata(L, sz);
  if (nuv > 0) {
    lua_createtable(L, nuv, 0);
    lua_setfenv(L, -2);
  }
  return p;
}
/* set user value n of the userdata at idx to the value on top (popped) */
static inline void xs2a_setuservalue(lua_State *L, int idx, int n) {
  idx = (idx < 0) ? lua_gettop(L) + idx + 1 : idx;
  lua_getfenv(L, idx);
  lua_insert(L, -2);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
}
static inline int xs2a_getuservalue(lua_State *L, int idx, int n) {
  lua_getfenv(L, idx);
  if (!lua_istable(L, -1)) { lua_pop(L, 1); lua_pushnil(L); return LUA_TNIL; }
  lua_rawgeti(L, -1, n);
  lua_remove(L, -2);
  return lua_type(L, -1);
}
#undef luaL_pushfail
#define luaL_pushfail(L) lua_pushnil(L)
#define LUAI_COMPAT_ISINTEGER 0
static inline int xs2a_isinteger(lua_State *L, int idx) {
  lua_Number n;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  n = lua_tonumber(L, idx);
  return n == (lua_Number)(lua_Integer)n;
}
#undef luaL_buffinitsize
#define luaL_buffinitsize(L, B, sz) (luaL_buffinit((L), (B)), luaL_prepbuffer(B))
#else
static inline void xs2a_setuservalue(lua_State *L, int idx, int n) {
  lua_setiuservalue(L, idx, n);
}
static inline int xs2a_getuservalue(lua_State *L, int idx, int n) {
  return lua_getiuservalue(L, idx, n);
}
static inline int xs2a_isinteger(lua_State *L, int idx) { return lua_isinteger(L, idx); }
#endif

#include <openssl/opensslv.h>
#if OPENSSL_VERSION_NUMBER < 0x10101000L
#error "lua-xs2a needs OpenSSL 1.1.1 or newer"
#endif

#endif
