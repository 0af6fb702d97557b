/* json.c: the pass xs2a.codec.json makes over what cjson decoded, in C.
 *
 *   core.json_walk(value, array_mt, mark, floats) -> value | nil, "nesting too deep"
 *
 * On a table, recursively: when `mark` is true (a cjson that does not mark
 * arrays itself), a table whose [1] is set is marked as a JSON array (gets
 * `array_mt`), and, when `floats` is true (Lua 5.3+ with a cjson
 * that returns floats for integral numbers), every float value with an
 * exact integer representation becomes that integer. The same rules as the
 * Lua walk it replaces (json.lua keeps that one for when the core is not
 * there): only values are converted, never keys, and arrays are decided
 * before their items change. A 50-transaction page (19 KB) spent 65 us in
 * the Lua walk under Lua 5.4 against 159 us in cjson itself.
 *
 * The depth is bounded (cjson stops at 1000 levels by default, WALK_MAX is
 * above that): a deeper value is answered with nil, "nesting too deep" and
 * may be left partly walked (json.lua then refuses the whole answer), so
 * the C stack never grows without bound, whatever table it is given, a
 * cycle included. fuzz/json.c checks the walk against json.lua's Lua walk. */
#include "core.h"

#define WALK_MAX 1100

#if LUA_VERSION_NUM >= 503
/* true, with *out set, when the value at idx is a float with an integer of
 * the same value (math.tointeger's rule) */
static int integral_float(lua_State *L, int idx, lua_Integer *out) {
  lua_Number n;
  if (lua_type(L, idx) != LUA_TNUMBER || lua_isinteger(L, idx)) return 0;
  n = lua_tonumber(L, idx);
  return lua_numbertointeger(n, out) && (lua_Number)*out == n;
}
#endif

/* walks the table at absolute index t; the array metatable is at index mt.
 * Returns 0 when a level past WALK_MAX or a full Lua stack stopped it. */
static int walk(lua_State *L, int t, int mt, int mark, int floats, int depth) {
  int is_array = 0;
  if (depth > WALK_MAX || !lua_checkstack(L, 4)) return 0;
  if (mark) {
    lua_rawgeti(L, t, 1);
    is_array = !lua_isnil(L, -1);
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {              /* key, value */
    int ty = lua_type(L, -1);
    if (ty == LUA_TTABLE) {
      if (!walk(L, lua_gettop(L), mt, mark, floats, depth + 1)) {
        lua_pop(L, 2);
        return 0;
      }
    }
#if LUA_VERSION_NUM >= 503
    else {
      lua_Integer i;
      if (floats && integral_float(L, -1, &i)) {
        lua_pushvalue(L, -2);                /* key, value, key */
        lua_pushinteger(L, i);               /* key, value, key, integer */
        lua_rawset(L, t);                    /* an existing key: allowed while traversing */
      }
    }
#endif
    lua_pop(L, 1);                           /* key */
  }
  if (is_array) {
    lua_pushvalue(L, mt);
    lua_setmetatable(L, t);
  }
  return 1;
}

static int json_walk(lua_State *L) {
  int mark = lua_toboolean(L, 3), floats = lua_toboolean(L, 4);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 4);
  if (lua_type(L, 1) == LUA_TTABLE) {
    if (!walk(L, 1, 2, mark, floats, 1)) {
      lua_pushnil(L);
      lua_pushliteral(L, "nesting too deep");
      return 2;
    }
  }
#if LUA_VERSION_NUM >= 503
  else {
    lua_Integer i;
    if (floats && integral_float(L, 1, &i)) {
      lua_pushinteger(L, i);
      return 1;
    }
  }
#endif
  lua_pushvalue(L, 1);
  return 1;
}

void xs2a_json_open(lua_State *L) {
  static const luaL_Reg fns[] = { {"json_walk", json_walk}, {NULL, NULL} };
  luaL_setfuncs(L, fns, 0);
}
