/* freed.c: the host of spec/c/freed.lua (run by spec/c/run). A Lua 5.4
 * interpreter that reads every block the process gives back to the C
 * library, through free() or a realloc() that moved it, and counts the
 * blocks that still hold a marker the script chose. The blocks of the Lua
 * state itself go through its own allocator and are not read: Lua strings
 * cannot be wiped, and what this host checks is that no copy the C side
 * makes (the core, libcurl, OpenSSL, nghttp2) is left behind readable.
 *
 *   build/c/freed SCRIPT      exits with the script's status
 *   FREED_TRACE=1 build/c/freed SCRIPT   also prints the stack of each block
 *                                        found holding the marker
 *
 * The script sees a global table `freed`:
 *   freed.scan(marker)   start counting (marker: 8..255 bytes); scan(nil) stops
 *   freed.counts()       -> blocks read, blocks that held the marker, how
 *                           many of those libnghttp2 gave back
 *   freed.leak(s)        frees a malloc'ed copy of s unwiped (a control: it
 *                        must be counted)
 * free() and realloc() here take the place of the C library's for every
 * shared library of the process; they call the library's own through
 * dlsym(RTLD_NEXT). glibc only (malloc_usable_size). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static void (*libc_free)(void *);
static void *(*libc_realloc)(void *, size_t);
static int resolving = 0;
static char marker[256];
static size_t marker_len = 0;          /* 0: not counting */
static unsigned long n_read = 0, n_found = 0;

static void resolve(void) {
  void *f, *r;
  resolving = 1;
  f = dlsym(RTLD_NEXT, "free");
  r = dlsym(RTLD_NEXT, "realloc");
  if (f == NULL || r == NULL) abort();
  memcpy(&libc_free, &f, sizeof f);
  memcpy(&libc_realloc, &r, sizeof r);
  resolving = 0;
}

static int trace = 0;                  /* FREED_TRACE set: print where each such block went back */
static unsigned long n_found_h2 = 0;   /* of those, blocks nghttp2 gave back */

/* whether the calling stack runs through libnghttp2 (which allocates with
 * the C library's functions, whatever libcurl was given) */
static int from_nghttp2(void *const *frames, int n) {
  int i;
  for (i = 0; i < n; i++) {
    Dl_info info;
    if (dladdr(frames[i], &info) != 0 && info.dli_fname != NULL && strstr(info.dli_fname, "libnghttp2") != NULL)
      return 1;
  }
  return 0;
}

static int holds_marker(void *p) {
  void *frames[32];
  int n;
  if (memmem(p, malloc_usable_size(p), marker, marker_len) == NULL) return 0;
  n = backtrace(frames, 32);
  if (from_nghttp2(frames, n)) n_found_h2++;
  if (trace) {
    fputs("-- a freed block held the marker:\n", stderr);
    backtrace_symbols_fd(frames, n, 2);
  }
  return 1;
}

void free(void *p) {
  if (p == NULL) return;
  if (libc_free == NULL) {
    if (resolving) return;             /* dlsym freeing while we look it up: keep the block */
    resolve();
  }
  if (marker_len > 0) {
    n_read++;
    if (holds_marker(p)) n_found++;
  }
  libc_free(p);
}

void *realloc(void *p, size_t n) {
  int had = 0;
  void *q;
  if (libc_realloc == NULL) resolve();
  if (p != NULL && marker_len > 0) {
    n_read++;
    had = holds_marker(p);
  }
  q = libc_realloc(p, n);
  if (had && q != NULL && q != p) n_found++;   /* moved: the old block went back as it was */
  return q;
}

/* the Lua state's allocator: the C library's own functions, never read */
static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    libc_free(ptr);
    return NULL;
  }
  return libc_realloc(ptr, nsize);
}

static int l_scan(lua_State *L) {
  size_t n = 0;
  const char *s = luaL_optlstring(L, 1, NULL, &n);
  if (s != NULL && (n < 8 || n >= sizeof marker)) return luaL_argerror(L, 1, "8 to 255 bytes");
  marker_len = 0;
  n_read = n_found = n_found_h2 = 0;
  if (s != NULL) {
    memcpy(marker, s, n);
    marker_len = n;
  }
  return 0;
}

static int l_counts(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)n_read);
  lua_pushinteger(L, (lua_Integer)n_found);
  lua_pushinteger(L, (lua_Integer)n_found_h2);
  return 3;
}

static int l_leak(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  char *p = (char *)malloc(n + 1);
  if (p == NULL) return luaL_error(L, "out of memory");
  memcpy(p, s, n + 1);
  free(p);
  return 0;
}

int main(int argc, char **argv) {
  static const luaL_Reg fns[] = { {"scan", l_scan}, {"counts", l_counts}, {"leak", l_leak}, {NULL, NULL} };
  lua_State *L;
  int status;
  if (argc < 2) {
    fprintf(stderr, "usage: %s SCRIPT\n", argv[0]);
    return 2;
  }
  resolve();
  {
    void *warm[2];
    backtrace(warm, 2);                /* loads what backtrace() needs, before any scan */
  }
  trace = getenv("FREED_TRACE") != NULL;
  if ((L = lua_newstate(lua_alloc, NULL)) == NULL) return 1;
  luaL_openlibs(L);
  luaL_newlib(L, fns);
  lua_setglobal(L, "freed");
  status = luaL_loadfile(L, argv[1]);
  if (status == LUA_OK) status = lua_pcall(L, 0, 0, 0);
  if (status != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  lua_close(L);
  return 0;
}
