/* fuzz.h: what the libFuzzer targets of lua-xs2a share. Each target drives
 * the C core the way Lua does (through the functions of the core table, in
 * a small Lua state that lives for the whole run), so the fuzzed code is the
 * shipped code. Built only by `make fuzz` and spec/c/run: the module itself
 * never links liblua. */
#ifndef XS2A_FUZZ_H
#define XS2A_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

int luaopen_xs2a_core(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lua_State *fuzz_L = NULL;

/* The Lua state, with the core table in the global "core". */
static inline lua_State *fuzz_state(void) {
  if (fuzz_L == NULL) {
    fuzz_L = luaL_newstate();
    if (fuzz_L == NULL) abort();
    luaL_openlibs(fuzz_L);
    luaL_requiref(fuzz_L, "xs2a.core", luaopen_xs2a_core, 0);
    lua_setglobal(fuzz_L, "core");
  }
  lua_settop(fuzz_L, 0);
  return fuzz_L;
}

/* Ends an input: drops the stack and collects everything it made, so that
 * finalizers (identity __gc) run inside the fuzz loop and every input frees
 * what it allocated (libFuzzer then needs no leak scan per input, and a
 * real leak in the core still shows). */
static inline void fuzz_done(lua_State *L) {
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
}

/* Pushes core[name]. */
static inline void fuzz_fn(lua_State *L, const char *name) {
  lua_getglobal(L, "core");
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  if (!lua_isfunction(L, -1)) {
    fprintf(stderr, "fuzz: core.%s is missing\n", name);
    abort();
  }
}

/* Calls the function under its nargs arguments; a Lua error (a raised
 * argument error) is a legal outcome, anything else must not happen. */
static inline int fuzz_call(lua_State *L, int nargs, int nres) {
  return lua_pcall(L, nargs, nres, 0);
}

/* Stops the run with a message when a property does not hold. */
#define FUZZ_CHECK(cond, msg) do { if (!(cond)) { \
  fprintf(stderr, "fuzz: property failed: %s (%s:%d)\n", msg, __FILE__, __LINE__); \
  abort(); } } while (0)

#endif
