/* time.c: clocks and a plain sleep for the Lua layer outside nginx. */
#include <errno.h>
#include <time.h>
#include "core.h"

/* core.sleep(ms): blocks the calling thread; never used inside nginx. */
static int time_sleep(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  struct timespec ts;
  luaL_argcheck(L, ms >= 0 && ms <= 3600000, 1, "sleep must be 0..3600000 ms");
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)((ms - (lua_Number)ts.tv_sec * 1000) * 1000000);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  return 0;
}

/* core.monotonic(): seconds (float) from an arbitrary start, never goes back. */
static int time_monotonic(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* core.now(): wall clock, epoch seconds with sub-second precision. */
static int time_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

void xs2a_time_open(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"sleep", time_sleep}, {"monotonic", time_monotonic}, {"now", time_now}, {NULL, NULL}
  };
  luaL_setfuncs(L, fns, 0);
}
