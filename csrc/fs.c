/* fs.c: the few file-system calls the file store (xs2a.store.file) needs
 * and plain Lua lacks: an advisory lock (flock), a durable atomic write
 * (temporary file, fsync, rename, fsync of the directory), a read that
 * leaves no copy in freed memory, a private directory, the owner and mode
 * of a path, and a directory listing. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include "core.h"

#define XS2A_FLOCK "xs2a.FileLock"

typedef struct { int fd; } xs2a_flock;

static int fs_fail(lua_State *L, const char *op, const char *path, int e) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s %s: %s", op, path, strerror(e));
  return 2;
}

/* core.fs_lock(path [, nonblock]) -> lock | nil, err ("locked" when
 * nonblock and another holds it). The lock file is created 0600. */
static int fs_lock(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int nonblock = lua_toboolean(L, 2);
  xs2a_flock *lk;
  int fd, rc;
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fs_fail(L, "open", path, errno);
  do rc = flock(fd, LOCK_EX | (nonblock ? LOCK_NB : 0)); while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) { lua_pushnil(L); lua_pushliteral(L, "locked"); return 2; }
    return fs_fail(L, "flock", path, e);
  }
  lk = (xs2a_flock *)lua_newuserdatauv(L, sizeof *lk, 0);
  lk->fd = fd;
  luaL_setmetatable(L, XS2A_FLOCK);
  return 1;
}

/* lock:unlock(): releases the lock (idempotent; also done by __gc). */
static int flock_unlock(lua_State *L) {
  xs2a_flock *lk = (xs2a_flock *)luaL_checkudata(L, 1, XS2A_FLOCK);
  if (lk->fd >= 0) {
    flock(lk->fd, LOCK_UN);
    close(lk->fd);
    lk->fd = -1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* fsync of the directory that holds path, so that a rename survives a crash */
static int sync_parent(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  size_t n;
  int fd, rc;
  if (slash == NULL) { dir[0] = '.'; dir[1] = '\0'; }
  else {
    n = (size_t)(slash - path);
    if (n == 0) n = 1;
    if (n >= sizeof dir) return -1;
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  rc = fsync(fd);
  close(fd);
  return rc;
}

/* core.fs_write(path, data) -> true | nil, err: writes data to a new 0600
 * file next to path, fsyncs it and renames it over path. A reader sees the
 * old record or the new one, never a part. */
static int fs_write(lua_State *L) {
  size_t plen, dlen;
  const char *path = luaL_checklstring(L, 1, &plen);
  const char *data = luaL_checklstring(L, 2, &dlen);
  char tmp[4096];
  struct timespec ts;
  int fd, e;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%ld", path, (long)getpid(), (long)ts.tv_nsec)
      >= (int)sizeof tmp)
    return fs_fail(L, "write", path, ENAMETOOLONG);
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fs_fail(L, "create", tmp, errno);
  if (write_all(fd, data, dlen) != 0 || fsync(fd) != 0) {
    e = errno;
    close(fd);
    unlink(tmp);
    return fs_fail(L, "write", tmp, e);
  }
  if (close(fd) != 0) { e = errno; unlink(tmp); return fs_fail(L, "close", tmp, e); }
  if (rename(tmp, path) != 0) { e = errno; unlink(tmp); return fs_fail(L, "rename", path, e); }
  if (sync_parent(path) != 0) return fs_fail(L, "fsync directory of", path, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* Reads the whole file at path with read(2) into *buf (OPENSSL_malloc'd,
 * *len bytes, *cap its size: give it back with OPENSSL_clear_free(*buf,
 * *cap)). No stdio buffer holds a copy, and each block the buffer outgrows
 * is wiped before it is freed: what the file holds (a private key, a
 * token) is never left readable in freed memory. nofollow refuses a
 * symbolic link. Returns 0, or an errno value (EFBIG when the buffer would
 * pass max bytes); on failure *buf is NULL. */
int xs2a_read_file(const char *path, size_t max, int nofollow, unsigned char **buf, size_t *len, size_t *cap) {
  unsigned char *b = NULL;
  size_t n = 0, c = 0;
  int fd, e = 0;
  do fd = open(path, O_RDONLY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0)); while (fd < 0 && errno == EINTR);
  if (fd < 0) e = errno ? errno : EIO;
  while (e == 0) {
    ssize_t r;
    if (n == c) {
      size_t nc = c ? c * 2 : 8192;
      unsigned char *nb;
      if (nc > max) { e = EFBIG; break; }
      if ((nb = OPENSSL_malloc(nc)) == NULL) { e = ENOMEM; break; }
      if (b != NULL) {
        memcpy(nb, b, n);
        OPENSSL_clear_free(b, c);
      }
      b = nb;
      c = nc;
    }
    r = read(fd, b + n, c - n);
    if (r < 0) {
      if (errno != EINTR) e = errno ? errno : EIO;
    } else if (r == 0) {
      break;
    } else {
      n += (size_t)r;
    }
  }
  if (fd >= 0) close(fd);
  if (e != 0) {
    if (b != NULL) OPENSSL_clear_free(b, c);
    b = NULL;
    n = c = 0;
  }
  *buf = b;
  *len = n;
  *cap = c;
  return e;
}

/* core.fs_read(path) -> data | nil, err, code ("absent" when there is no
 * such file, else "io"): a file-store record (a token), read by
 * xs2a_read_file. A symbolic link is refused, as fs_write never makes
 * one. At most FS_READ_MAX bytes. */
#define FS_READ_MAX (64 * 1024 * 1024)
static int fs_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  unsigned char *buf;
  size_t len, cap;
  int e = xs2a_read_file(path, FS_READ_MAX, 1, &buf, &len, &cap);
  if (e != 0) {
    fs_fail(L, "read", path, e);
    lua_pushstring(L, (e == ENOENT || e == ENOTDIR) ? "absent" : "io");
    return 3;
  }
  lua_pushlstring(L, buf != NULL ? (const char *)buf : "", len);
  if (buf != NULL) OPENSSL_clear_free(buf, cap);
  return 1;
}

/* core.fs_mkdir(path) -> true | nil, err: mode 0700; an existing one is fine */
static int fs_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (mkdir(path, 0700) != 0 && errno != EEXIST) return fs_fail(L, "mkdir", path, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.fs_stat(path) -> { mode = n, dir = bool, mine = bool, link = bool, mtime = s } | nil, err
 * (lstat: a symbolic link is reported as such, not followed) */
static int fs_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (lstat(path, &st) != 0) return fs_fail(L, "stat", path, errno);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushboolean(L, S_ISDIR(st.st_mode));
  lua_setfield(L, -2, "dir");
  lua_pushboolean(L, S_ISLNK(st.st_mode));
  lua_setfield(L, -2, "link");
  lua_pushboolean(L, st.st_uid == geteuid());
  lua_setfield(L, -2, "mine");
  lua_pushnumber(L, (lua_Number)st.st_mtime);
  lua_setfield(L, -2, "mtime");
  return 1;
}

/* core.fs_list(dir) -> { name, ... } | nil, err (without . and ..) */
static int fs_list(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  struct dirent *de;
  int n = 0;
  if (d == NULL) return fs_fail(L, "opendir", path, errno);
  lua_newtable(L);
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    lua_pushstring(L, de->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  return 1;
}

void xs2a_fs_open(lua_State *L) {
  static const luaL_Reg methods[] = { {"unlock", flock_unlock}, {NULL, NULL} };
  static const luaL_Reg meta[] = { {"__gc", flock_unlock}, {NULL, NULL} };
  static const luaL_Reg fns[] = {
    {"fs_lock", fs_lock}, {"fs_write", fs_write}, {"fs_read", fs_read}, {"fs_mkdir", fs_mkdir},
    {"fs_stat", fs_stat}, {"fs_list", fs_list}, {NULL, NULL}
  };
  xs2a_newclass(L, XS2A_FLOCK, methods, meta);
  luaL_setfuncs(L, fns, 0);
}
