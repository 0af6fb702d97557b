/* Fuzz target: core.json_walk (csrc/json.c), checked against the Lua walk of
 * xs2a.codec.json (`_walks.lua`, the pass json.decode makes when the core is
 * not there). Each input makes a value; one deep copy goes through the C
 * walk, the value itself through the Lua walk, with the same flags, and the
 * two results must be the same: same types, same number subtypes (integer
 * or float; NaN equals NaN, -0.0 differs from 0.0), the array metatable on
 * the same tables, the same keys. The Lua walk's result must also follow
 * the rule, checked against a third copy taken before the walks (a table is
 * marked when `mark` and its [1] is set; with `floats` a float value with
 * an integer of the same value becomes that integer; keys and everything
 * else stay). The Lua walk has no depth bound: a value deeper than WALK_MAX
 * (1100) levels goes to the C walk only, which must answer nil, "nesting too
 * deep". The Lua walk's flags are fixed when json.lua loads (from what cjson
 * can do), so json.lua is loaded once per flag pair with a stand-in cjson
 * (Debian's lua-cjson serves its own pair, mark and floats).
 *
 * Input: byte 0 is a header, the rest a value.
 *   header bit 0: mark, bit 1: floats;
 *          bit 2: the rest is JSON text, decoded by lua-cjson (its depth
 *                 limit raised to 1300) when it loads, else read as below;
 *          bit 3: also give the C walk a cycle of (header >> 4) + 1 tables
 *                 (it must answer nil, "nesting too deep").
 *   value: a tag byte, then by tag % 12:
 *     0 integer, 1 signed byte      1 integer, 8 bytes big-endian
 *     2 float from a list of edge cases (1.0, -0.0, 2^53, 2^63, -2^63,
 *       1e300, NaN, inf, 0.5, ...), indexed by 1 byte
 *     3 float, 8 bytes big-endian IEEE bits
 *     4 float, 1 signed byte (halved when the tag is >= 128)
 *     5 string: length byte, then the bytes     6 boolean (tag >= 128)
 *     7 null (a NULL light userdata, as cjson.null)
 *     8 array: count byte n, then n values at 1..n
 *     9 object: count byte n, then n (key, value) pairs; a key is a tag
 *       byte, by tag % 6: 0 signed byte, 1 8-byte integer, 2 edge-case
 *       float, 3 string, 4 boolean, 5 8-byte float (a NaN key drops its pair)
 *    10 array with holes: count n, first index (signed byte), step byte
 *       (step % 4 + 1), then n values
 *    11 chain: 2 bytes depth d (big-endian, % 1400), a shape byte, the
 *       innermost value, wrapped in d tables: shape bit 0 {x} else {v = x},
 *       bit 1 alternate the two, bit 2 add a 1.0 beside x, bit 3 x at [2]
 *       (a hole at [1]) instead of [1]
 *   Missing bytes read as 0. Bounds per input (they keep an input to a few
 *   milliseconds): 48 nested tags (a deeper table tag gives a number), 1400
 *   levels, 1500 tables, 4000 values (past that every value is 0). */
#include <float.h>
#include <math.h>
#include "fuzz.h"

#define WALK_MAX 1100                 /* csrc/json.c's bound */
#define MAX_REC 48
#define MAX_LEVEL 1400
#define MAX_TABLES 1500
#define MAX_VALUES 4000
#define MAX_CHAIN 1400

/* The Lua side, loaded once: json.lua once per flag pair, and what
 * json.decode does after cjson, the Lua way. Returns a table: lua_side(slot,
 * v), decode(text) (false without cjson), mt[slot], cycle(n, mark, floats). */
static const char harness[] =
  "local null = ...\n"
  "package.path = './lua/?.lua;./lua/?/init.lua;' .. package.path\n"
  "local has_cjson, cjson = pcall(require, 'cjson')\n"
  "if not has_cjson then cjson = nil end\n"
  "-- json.lua loaded with `c` as its cjson\n"
  "local function with_cjson(c)\n"
  "  local saved = package.loaded.cjson\n"
  "  package.loaded.cjson = c\n"
  "  package.loaded['xs2a.codec.json'] = nil\n"
  "  local ok, m = pcall(require, 'xs2a.codec.json')\n"
  "  package.loaded.cjson = saved\n"
  "  package.loaded['xs2a.codec.json'] = nil\n"
  "  if not ok then error('cannot load xs2a.codec.json: ' .. tostring(m)) end\n"
  "  return m\n"
  "end\n"
  "local function slot(mark, floats) return (mark and 1 or 0) + (floats and 2 or 0) + 1 end\n"
  "local variants = {}\n"
  "for i = 0, 3 do\n"
  "  local mark, floats = i % 2 == 1, i >= 2\n"
  "  -- a stand-in that marks arrays itself (then the walk does not) or not,\n"
  "  -- and decodes [1] to a float (then the walk converts) or an integer\n"
  "  local stub = { null = cjson and cjson.null or null,\n"
  "    decode = function() return { floats and 1.0 or 1 } end }\n"
  "  if not mark then\n"
  "    stub.array_mt = { __name = 'stand-in array' }\n"
  "    stub.decode_array_with_array_mt = function() end\n"
  "    stub.new = function() return stub end\n"
  "  end\n"
  "  variants[slot(mark, floats)] = with_cjson(stub)\n"
  "end\n"
  "local decode = false\n"
  "if cjson then\n"
  "  local real = with_cjson(cjson)\n"
  "  variants[slot(real._walks.mark, real._walks.floats)] = real\n"
  "  local decoder = cjson.new()\n"
  "  decoder.decode_max_depth(1300)\n"
  "  decode = function(text)\n"
  "    local ok, v = pcall(decoder.decode, text)\n"
  "    if ok then return v end\n"
  "    return nil\n"
  "  end\n"
  "end\n"
  "local mt = {}\n"
  "for i = 0, 3 do\n"
  "  local m = variants[i + 1]\n"
  "  local w = m._walks\n"
  "  if w.mark ~= (i % 2 == 1) or w.floats ~= (i >= 2) then error('json.lua did not take the flags ' .. i) end\n"
  "  if not rawequal(w.c, core.json_walk) or type(w.lua) ~= 'function' then error('json.lua has no walks') end\n"
  "  mt[i + 1] = m.array_mt\n"
  "end\n"
  "local tointeger = math.tointeger\n"
  "local function lua_side(i, v)\n"
  "  local w = variants[i]._walks\n"
  "  if type(v) == 'table' then return w.lua(v) end\n"
  "  if w.floats and type(v) == 'number' then return tointeger(v) or v end\n"
  "  return v\n"
  "end\n"
  "-- a cycle of n tables, through values: the C walk must stop at its bound\n"
  "local function cycle(n, mark, floats)\n"
  "  local first = { 1.0, x = 0.5 }\n"
  "  local t = first\n"
  "  for i = 2, n do\n"
  "    local u = { 2.0, i }\n"
  "    t[i % 2 == 0 and 'next' or 2] = u\n"
  "    t = u\n"
  "  end\n"
  "  t.back = first\n"
  "  local r = table.pack(core.json_walk(first, mt[1], mark, floats))\n"
  "  if r.n ~= 2 or r[1] ~= nil or r[2] ~= 'nesting too deep' then\n"
  "    error(string.format('C walk: a cycle of %d gave %s, %s', n, tostring(r[1]), tostring(r[2])))\n"
  "  end\n"
  "end\n"
  "return { lua_side = lua_side, decode = decode, mt = mt, cycle = cycle }\n";

/* floats that sit on the edges of the rule (integral or not, in the
 * integer range or just outside, signed zeros, NaN, infinities) */
static const double edge_floats[] = {
  1.0, -0.0, 0.0, 0.5, -0.5, 1.5, -1.0, 3.0, 100.0, 1e15, 1e16, 1e300, -1e300,
  1e-300, 4.9406564584124654e-324, DBL_MAX, -DBL_MAX,
  9007199254740992.0,                 /* 2^53 */
  9007199254740994.0,                 /* 2^53 + 2 */
  -9007199254740992.0,
  4611686018427387904.0,              /* 2^62 */
  9223372036854774784.0,              /* the largest double below 2^63 */
  9223372036854775808.0,              /* 2^63: no integer */
  -9223372036854775808.0,             /* -2^63: math.mininteger */
  -9223372036854777856.0,             /* the next double below -2^63 */
  18446744073709551616.0,             /* 2^64 */
  INFINITY, -INFINITY, NAN, -NAN,
};
#define N_EDGE (sizeof edge_floats / sizeof edge_floats[0])

typedef struct {
  const uint8_t *p;
  size_t n, at;
  int tables, values;                  /* made so far */
} prog;

static uint8_t u8(prog *g) { return g->at < g->n ? g->p[g->at++] : 0; }

static uint64_t u64(prog *g) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++) v = (v << 8) | u8(g);
  return v;
}

static double raw_double(prog *g) {
  uint64_t bits = u64(g);
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

static void push_string(lua_State *L, prog *g) {
  size_t len = u8(g);
  if (len > g->n - g->at) len = g->n - g->at;
  lua_pushlstring(L, (const char *)g->p + g->at, len);
  g->at += len;
}

/* pushes a key; 0 (nothing pushed) for a NaN, which cannot be one */
static int push_key(lua_State *L, prog *g) {
  uint8_t tag = u8(g);
  double d;
  switch (tag % 6) {
  case 0: lua_pushinteger(L, (int8_t)u8(g)); return 1;
  case 1: lua_pushinteger(L, (lua_Integer)u64(g)); return 1;
  case 2: d = edge_floats[u8(g) % N_EDGE]; break;
  case 3: push_string(L, g); return 1;
  case 4: lua_pushboolean(L, tag >= 128); return 1;
  default: d = raw_double(g); break;
  }
  if (isnan(d)) return 0;
  lua_pushnumber(L, d);
  return 1;
}

static int take_table(prog *g) {
  if (g->tables >= MAX_TABLES) return 0;
  g->tables++;
  return 1;
}

/* pushes the value the program describes; `level` is its table level (the
 * top value is at 1), `rec` how many tags enclose it */
static void push_value(lua_State *L, prog *g, int level, int rec) {
  uint8_t tag;
  int kind, i, n;
  luaL_checkstack(L, 6, "json fuzz builder");
  if (++g->values > MAX_VALUES) {
    lua_pushinteger(L, 0);
    return;
  }
  tag = u8(g);
  kind = tag % 12;
  if (kind >= 8 && (rec >= MAX_REC || !take_table(g))) {
    lua_pushinteger(L, tag);           /* too deep or too many: a leaf */
    return;
  }
  switch (kind) {
  case 0: lua_pushinteger(L, (int8_t)u8(g)); break;
  case 1: lua_pushinteger(L, (lua_Integer)u64(g)); break;
  case 2: lua_pushnumber(L, edge_floats[u8(g) % N_EDGE]); break;
  case 3: lua_pushnumber(L, raw_double(g)); break;
  case 4: lua_pushnumber(L, (double)(int8_t)u8(g) / (tag >= 128 ? 2.0 : 1.0)); break;
  case 5: push_string(L, g); break;
  case 6: lua_pushboolean(L, tag >= 128); break;
  case 7: lua_pushlightuserdata(L, NULL); break;
  case 8:
    n = u8(g);
    lua_createtable(L, n, 0);
    for (i = 1; i <= n; i++) {
      push_value(L, g, level + 1, rec + 1);
      lua_rawseti(L, -2, i);
    }
    break;
  case 9:
    n = u8(g);
    lua_createtable(L, 0, n);
    for (i = 0; i < n; i++) {
      int has_key = push_key(L, g);
      push_value(L, g, level + 1, rec + 1);
      if (has_key) lua_rawset(L, -3);
      else lua_pop(L, 1);
    }
    break;
  case 10: {
    lua_Integer first, step;
    n = u8(g);
    first = (int8_t)u8(g);
    step = u8(g) % 4 + 1;
    lua_createtable(L, 0, n);
    for (i = 0; i < n; i++) {
      push_value(L, g, level + 1, rec + 1);
      lua_rawseti(L, -2, first + i * step);
    }
    break;
  }
  default: {                           /* 11: a chain of d tables */
    int d, shape;
    g->tables--;                       /* counted below, d of them */
    d = u8(g) << 8;
    d = (d | u8(g)) % MAX_CHAIN;
    shape = u8(g);
    if (d > MAX_LEVEL - level) d = MAX_LEVEL - level;
    if (d > MAX_TABLES - g->tables) d = MAX_TABLES - g->tables;
    if (d < 0) d = 0;
    g->tables += d;
    push_value(L, g, level + d, rec + 1);
    for (i = 0; i < d; i++) {
      int arr = (shape & 1) ^ ((shape & 2) ? (i & 1) : 0);
      lua_Integer at = (shape & 8) ? 2 : 1;
      lua_createtable(L, 2, 1);
      lua_insert(L, -2);               /* table, inner */
      if (arr) lua_rawseti(L, -2, at);
      else lua_setfield(L, -2, "v");
      if (shape & 4) {
        lua_pushnumber(L, 1.0);
        if (arr) lua_rawseti(L, -2, at + 1);
        else lua_setfield(L, -2, "f");
      }
    }
    break;
  }
  }
}


/* ---- the comparison, in C: the Lua way (type(), math.type()) costs an
 * intercepted strcmp per call under the sanitizers, several times the
 * walks themselves ---- */

/* table levels of the value at idx (0 for a non-table; no cycles here) */
static int depth_of(lua_State *L, int idx) {
  int d = 0;
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 4, "depth");
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -1) == LUA_TTABLE) {
      int e = depth_of(L, -1);
      if (e > d) d = e;
    }
    lua_pop(L, 1);
  }
  return d + 1;
}

static int count_keys(lua_State *L, int t) {
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    n++;
    lua_pop(L, 1);
  }
  return n;
}

/* pushes a deep copy of the value at idx (keys as they are) */
static void push_copy(lua_State *L, int idx) {
  int narr, n;
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) {
    lua_pushvalue(L, idx);
    return;
  }
  luaL_checkstack(L, 6, "copy");
  narr = (int)lua_rawlen(L, idx);
  n = count_keys(L, idx);
  lua_createtable(L, narr <= n ? narr : 0, narr <= n ? n - narr : n);   /* sized: no rehash */
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {            /* copy, key, value */
    lua_pushvalue(L, -2);
    push_copy(L, -2);                        /* copy, key, value, key, value' */
    lua_rawset(L, -5);
    lua_pop(L, 1);
  }
}

/* math.tointeger's rule, written out: an integral float in [-2^63, 2^63) */
static int has_integer(double x, lua_Integer *out) {
  if (!(x == floor(x) && x >= -9223372036854775808.0 && x < 9223372036854775808.0)) return 0;
  *out = (lua_Integer)x;
  return 1;
}

/* same type, same number subtype and value (NaN is NaN, -0.0 is not 0.0) */
static int same_leaf(lua_State *L, int a, int b) {
  int t = lua_type(L, a);
  if (t != lua_type(L, b)) return 0;
  if (t == LUA_TNUMBER) {
    double x, y;
    if (lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
    if (lua_isinteger(L, a)) return lua_tointeger(L, a) == lua_tointeger(L, b);
    x = lua_tonumber(L, a);
    y = lua_tonumber(L, b);
    if (isnan(x)) return isnan(y);
    return x == y && !signbit(x) == !signbit(y);
  }
  return lua_rawequal(L, a, b);
}

/* pushes a short text for the value at idx */
static void push_show(lua_State *L, int idx) {
  char buf[64];
  if (lua_type(L, idx) == LUA_TNUMBER) {
    if (lua_isinteger(L, idx)) snprintf(buf, sizeof buf, "%lld (integer)", (long long)lua_tointeger(L, idx));
    else snprintf(buf, sizeof buf, "%.17g (float)", lua_tonumber(L, idx));
    lua_pushstring(L, buf);
  } else if (lua_type(L, idx) == LUA_TSTRING) {
    lua_pushfstring(L, "\"%s\"", lua_tostring(L, idx));
  } else {
    luaL_tolstring(L, idx, NULL);
  }
}

/* leaves only the message on top of what the stack held at `base` */
static int failed(lua_State *L, int base) {
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
  return 1;
}

/* the message on top gets the key at idx in front of it */
static void prefix_key(lua_State *L, int key) {
  push_show(L, key);
  lua_pushfstring(L, "[%s]%s", lua_tostring(L, -1), lua_tostring(L, -2));
  lua_remove(L, -2);
  lua_remove(L, -2);
}

/* 1 when the table at idx has exactly the metatable at mt (0: none) */
static int has_mt(lua_State *L, int idx, int mt) {
  int ok;
  if (!lua_getmetatable(L, idx)) return mt == 0;
  ok = mt != 0 && lua_rawequal(L, -1, mt);
  lua_pop(L, 1);
  return ok;
}

/* 0 when a and b are the same value (metatables included); else 1, with
 * where and how they differ on top of the stack */
static int diff(lua_State *L, int a, int b) {
  int base = lua_gettop(L), n = 0;
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  if (lua_type(L, a) != LUA_TTABLE || lua_type(L, b) != LUA_TTABLE) {
    if (same_leaf(L, a, b)) return 0;
    push_show(L, a);
    push_show(L, b);
    lua_pushfstring(L, ": %s vs %s", lua_tostring(L, -2), lua_tostring(L, -1));
    return failed(L, base);
  }
  luaL_checkstack(L, 8, "diff");
  if (lua_getmetatable(L, a)) {
    if (!has_mt(L, b, lua_gettop(L))) {
      lua_pushliteral(L, ": metatable in the first only or another");
      return failed(L, base);
    }
    lua_pop(L, 1);
  } else if (lua_getmetatable(L, b)) {
    lua_pushliteral(L, ": metatable in the second only");
    return failed(L, base);
  }
  lua_pushnil(L);
  while (lua_next(L, a) != 0) {              /* key, x */
    n++;
    lua_pushvalue(L, -2);
    lua_rawget(L, b);                        /* key, x, y */
    if (lua_isnil(L, -1)) {
      lua_pushliteral(L, ": only in the first");
      prefix_key(L, -4);
      return failed(L, base);
    }
    if (diff(L, -2, -1)) {
      prefix_key(L, -4);
      return failed(L, base);
    }
    lua_pop(L, 2);
  }
  if (count_keys(L, b) != n) {
    lua_pushliteral(L, ": the second has more keys");
    return failed(L, base);
  }
  return 0;
}

/* 0 when g is what the walk's rule makes of o (the value before the walk):
 * tables keep their keys and get the metatable at mt when `mark` and their
 * [1] is set; with `floats` a float value with an integer of the same value
 * becomes that integer; anything else stays. Else 1, with a message. */
static int rule(lua_State *L, int o, int g, int mark, int floats, int mt) {
  int base = lua_gettop(L), n = 0, want;
  o = lua_absindex(L, o);
  g = lua_absindex(L, g);
  if (lua_type(L, o) != LUA_TTABLE) {
    lua_Integer i;
    if (floats && lua_type(L, o) == LUA_TNUMBER && !lua_isinteger(L, o) && has_integer(lua_tonumber(L, o), &i))
      lua_pushinteger(L, i);
    else
      lua_pushvalue(L, o);
    if (same_leaf(L, -1, g)) {
      lua_pop(L, 1);
      return 0;
    }
    push_show(L, o);
    push_show(L, g);
    push_show(L, -3);
    lua_pushfstring(L, ": %s became %s, not %s", lua_tostring(L, -3), lua_tostring(L, -2), lua_tostring(L, -1));
    return failed(L, base);
  }
  if (lua_type(L, g) != LUA_TTABLE) {
    lua_pushliteral(L, ": a table became something else");
    return failed(L, base);
  }
  luaL_checkstack(L, 8, "rule");
  lua_rawgeti(L, o, 1);
  want = mark && !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (!has_mt(L, g, want ? mt : 0)) {
    lua_pushstring(L, want ? ": not marked as an array" : ": marked (or another metatable)");
    return failed(L, base);
  }
  lua_pushnil(L);
  while (lua_next(L, o) != 0) {              /* key, x */
    n++;
    lua_pushvalue(L, -2);
    lua_rawget(L, g);                        /* key, x, y */
    if (lua_isnil(L, -1)) {
      lua_pushliteral(L, ": key lost");
      prefix_key(L, -4);
      return failed(L, base);
    }
    if (rule(L, -2, -1, mark, floats, mt)) {
      prefix_key(L, -4);
      return failed(L, base);
    }
    lua_pop(L, 2);
  }
  if (count_keys(L, g) != n) {
    lua_pushliteral(L, ": keys added");
    return failed(L, base);
  }
  return 0;
}

/* ---- the target ---- */

static int harness_ref = LUA_NOREF, have_cjson = 0;

/* pushes field `name` of the harness table */
static void harness_get(lua_State *L, const char *name) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, harness_ref);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

/* calls the harness function under its nargs arguments; a Lua error is a
 * failed property, with the harness's message */
static void run(lua_State *L, int nargs, int nres) {
  if (lua_pcall(L, nargs, nres, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    FUZZ_CHECK(0, msg != NULL ? msg : "a Lua error that is not a string");
  }
}

/* calls core.json_walk(value at v, array metatable at mt, mark, floats);
 * returns how many results it left on the stack */
static int c_walk(lua_State *L, int v, int mt, int mark, int floats) {
  int top = lua_gettop(L);
  fuzz_fn(L, "json_walk");
  lua_pushvalue(L, v);
  lua_pushvalue(L, mt);
  lua_pushboolean(L, mark);
  lua_pushboolean(L, floats);
  FUZZ_CHECK(fuzz_call(L, 4, LUA_MULTRET) == LUA_OK, "core.json_walk does not raise on a table");
  return lua_gettop(L) - top;
}

static void report(lua_State *L, const char *what, int mark, int floats) {
  fprintf(stderr, "fuzz: %s at $%s (mark %d, floats %d)\n", what, lua_tostring(L, -1), mark, floats);
  FUZZ_CHECK(0, what);
}

/* the value at v, through both walks */
static void check(lua_State *L, int v, int mark, int floats) {
  int slot = 1 + mark + 2 * floats, mt, d, orig, a, ra, rb;
  harness_get(L, "mt");
  lua_rawgeti(L, -1, slot);
  lua_remove(L, -2);
  mt = lua_gettop(L);
  d = depth_of(L, v);
  if (d > WALK_MAX) {                        /* only the C walk has a bound */
    int n = c_walk(L, v, mt, mark, floats);
    const char *s = lua_tostring(L, -1);
    if (!(n == 2 && lua_isnil(L, -2) && s != NULL && strcmp(s, "nesting too deep") == 0)) {
      fprintf(stderr, "fuzz: %d levels, %d results (mark %d, floats %d)\n", d, n, mark, floats);
      FUZZ_CHECK(0, "past WALK_MAX levels the C walk answers nil, \"nesting too deep\"");
    }
    return;
  }
  push_copy(L, v);
  orig = lua_gettop(L);
  push_copy(L, v);
  a = lua_gettop(L);
  if (c_walk(L, a, mt, mark, floats) != 1) {
    fprintf(stderr, "fuzz: %d levels (mark %d, floats %d)\n", d, mark, floats);
    FUZZ_CHECK(0, "up to WALK_MAX levels the C walk gives one value");
  }
  ra = lua_gettop(L);
  FUZZ_CHECK(lua_type(L, a) != LUA_TTABLE || lua_rawequal(L, a, ra), "the C walk gives back the table it was given");
  harness_get(L, "lua_side");
  lua_pushinteger(L, slot);
  lua_pushvalue(L, v);
  run(L, 2, 1);
  rb = lua_gettop(L);
  if (diff(L, ra, rb)) report(L, "the C walk (first) and the Lua walk (second) differ", mark, floats);
  if (rule(L, orig, rb, mark, floats, mt)) report(L, "both walks break the rule", mark, floats);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_state();
  uint8_t head = size > 0 ? data[0] : 0;
  int mark = head & 1, floats = (head >> 1) & 1;
  if (harness_ref == LUA_NOREF) {
    FUZZ_CHECK(luaL_loadstring(L, harness) == LUA_OK, "the harness compiles");
    lua_pushlightuserdata(L, NULL);
    run(L, 1, 1);
    lua_getfield(L, -1, "decode");
    have_cjson = lua_toboolean(L, -1);
    lua_pop(L, 1);
    harness_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if ((head & 4) && have_cjson) {
    harness_get(L, "decode");
    lua_pushlstring(L, (const char *)data + 1, size - 1);
    run(L, 1, 1);                            /* nil: not JSON */
  } else {
    prog g;
    g.p = data + (size > 0);
    g.n = size - (size > 0);
    g.at = 0;
    g.tables = 0;
    g.values = 0;
    push_value(L, &g, 1, 0);
  }
  if (!lua_isnil(L, -1)) check(L, lua_gettop(L), mark, floats);
  if (head & 8) {
    harness_get(L, "cycle");
    lua_pushinteger(L, (head >> 4) + 1);
    lua_pushboolean(L, mark);
    lua_pushboolean(L, floats);
    run(L, 3, 0);
  }
  fuzz_done(L);
  return 0;
}
