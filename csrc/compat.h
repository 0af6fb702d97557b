/* compat.h: the one place that knows about Lua and OpenSSL versions.
 * Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT 2.1; OpenSSL 3.0 or later (the core uses
 * EVP_PKEY_eq, EVP_MD_fetch, EVP_PKEY_get_size and friends, which 1.1.1 does
 * not have). The C code is written against 5.4; below, what older versions
 * lack. */
#ifndef XS2A_COMPAT_H
#define XS2A_COMPAT_H

#include <openssl/opensslv.h>
#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "lua-xs2a needs OpenSSL 3.0 or later"
#endif

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

#undef luaL_pushfail
#define luaL_pushfail(L) lua_pushnil(L)
#undef luaL_buffinitsize
#define luaL_buffinitsize(L, B, sz) (luaL_buffinit((L), (B)), luaL_prepbuffer(B))
#define xs2a_getuvtable(L, idx) lua_getfenv((L), (idx))
#define xs2a_setuvtable(L, idx) lua_setfenv((L), (idx))
#elif LUA_VERSION_NUM < 504
/* Lua 5.2 and 5.3: one user value per userdata (a table, as 5.2 wants). */
#undef luaL_pushfail
#define luaL_pushfail(L) lua_pushnil(L)
#define xs2a_getuvtable(L, idx) ((void)lua_getuservalue((L), (idx)))
#define xs2a_setuvtable(L, idx) lua_setuservalue((L), (idx))
#endif

#if LUA_VERSION_NUM < 504
/* 5.4 userdata with n user values: before 5.4 we keep them in one table,
 * in the fenv (5.1, LuaJIT) or in the single user value (5.2, 5.3). */
#undef lua_newuserdatauv
#define lua_newuserdatauv(L, sz, nuv) xs2a_compat_newuserdatauv((L), (sz), (nuv))
static inline void *xs2a_compat_newuserdatauv(lua_State *L, size_t sz, int nuv) {
  void *p = lua_newuserdata(L, sz);
  if (nuv > 0) {
    lua_createtable(L, nuv, 0);
    xs2a_setuvtable(L, -2);
  }
  return p;
}
/* set user value n of the userdata at idx to the value on top (popped) */
static inline void xs2a_setuservalue(lua_State *L, int idx, int n) {
  idx = (idx < 0) ? lua_gettop(L) + idx + 1 : idx;
  xs2a_getuvtable(L, idx);
  lua_insert(L, -2);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
}
static inline int xs2a_getuservalue(lua_State *L, int idx, int n) {
  xs2a_getuvtable(L, idx);
  if (!lua_istable(L, -1)) { lua_pop(L, 1); lua_pushnil(L); return LUA_TNIL; }
  lua_rawgeti(L, -1, n);
  lua_remove(L, -2);
  return lua_type(L, -1);
}
#else
static inline void xs2a_setuservalue(lua_State *L, int idx, int n) {
  lua_setiuservalue(L, idx, n);
}
static inline int xs2a_getuservalue(lua_State *L, int idx, int n) {
  return lua_getiuservalue(L, idx, n);
}
#endif

#if LUA_VERSION_NUM >= 503
static inline int xs2a_isinteger(lua_State *L, int idx) { return lua_isinteger(L, idx); }
#else
/* before 5.3 every number is a double: an integer is one without a fraction */
static inline int xs2a_isinteger(lua_State *L, int idx) {
  lua_Number n;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  n = lua_tonumber(L, idx);
  return n == (lua_Number)(lua_Integer)n;
}
#endif

#endif
