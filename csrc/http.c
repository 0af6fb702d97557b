/* http.c: HTTPS sessions over libcurl (a share handle, a multi handle, mTLS from memory). */

/* core.http_session(opts) -> Session | nil, message, code
 *   opts: identity (xs2a.Identity; nil/false = no client certificate),
 *         cert_file/key_file (PEM paths instead of an identity: loaded once,
 *         here, as core.identity would; a bad file fails here), ca_file
 *         (default: libcurl's system store), connect_timeout, timeout (ms,
 *         1..86400000; defaults 5000, 30000), max_body (bytes, default 8 MiB),
 *         http2 (default true: offered through ALPN), proxy (default: none;
 *         proxy variables of the environment are ignored).
 *   Wrong option types raise; an unreadable file gives nil, message, code.
 *   Always: https only, TLS >= 1.2, peer and host verification, no redirects.
 *
 * session:request(req) -> res | nil, message, code       (blocks, bounded)
 * session:submit(req)  -> id | nil, message, code
 * session:poll(wait_ms) -> { {id=, res=} | {id=, err=, code=}, ... }
 *   waits at most wait_ms for at least one result; finished transfers are
 *   reported once. session:pending() counts submitted transfers not yet
 *   reported by poll. close() (also __close, __gc) is idempotent and cancels
 *   transfers in flight; any other use after close raises.
 *
 * req = { method = "GET", url = "https://...", headers = { Name = "value" },
 *         body = string|nil, timeout = ms|nil, max_body = bytes|nil,
 *         header_list = bool, timings = bool }
 *   Wrong types raise. A request that must not be sent (method or header
 *   name not a token, header value with CR, LF or NUL, url not https:// or
 *   with spaces or control characters) gives nil, message, "bad_request".
 *
 * res = { status, headers = { lowercase = "v1, v2" }, header_list = { {Name, v}, ... },
 *         body, reused, http_version = "1.1"|"2", time = { dns, connect, tls, ttfb, total } }
 *   (seconds from the start of the transfer). Headers are those of the
 *   final response only (never of a 1xx). header_list and time are built
 *   only when the request asks (header_list = true, timings = true): the
 *   client needs neither, and they cost a table per header.
 *
 * Codes: see error_code(). A timeout before the connection (TCP and TLS)
 * was up is "connect" (nothing was sent); a TLS 1.3 client-certificate
 * alert on the first read or write is "tls". */
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>                /* malloc_usable_size */
#endif
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "core.h"

/* The mutable C globals: libcurl's process-wide initialisation, and
 * whether libcurl's memory goes through the wiping functions below. */
static int http_curl_ready = 0;
static int http_curl_wipes = 0;

#define DEFAULT_CONNECT_TIMEOUT 5000      /* ms */
#define DEFAULT_TIMEOUT 30000             /* ms */
#define DEFAULT_MAX_BODY (8 * 1024 * 1024)
#define MAX_HEADER_BYTES (256 * 1024)     /* all header lines of one response */
#define MAX_TIMEOUT 86400000              /* one day, in ms */
#define DRIVE_SLICE 1000                  /* longest single wait inside request() */
#define MAX_CONNECTS 64                   /* idle connections kept by a session */
#define POOL_MAX 64                       /* finished transfers kept for reuse */
#define POOL_BUF_MAX (64 * 1024)          /* larger response buffers are not kept */

enum { XF_NEW, XF_RUNNING, XF_DONE, XF_CLAIMED };

typedef struct membuf {
  char *p;                 /* owned (malloc) */
  size_t len, cap;
  size_t hi;               /* bytes written at some point: what a wipe covers */
} membuf;

typedef struct xs2a_session xs2a_session;

/* One transfer. Lives in the session's list from submit until its result
 * has been handed to Lua (or the session closes). */
typedef struct xfer {
  struct xfer *next;
  CURL *easy;                  /* owned */
  struct curl_slist *hdrs;     /* owned */
  lua_Integer id;
  int state;
  CURLcode result;
  int too_large, oom;         /* too_large: 1 = the body, 2 = the header lines */
  int want_list, want_time;    /* req.header_list, req.timings: build those fields */
  int configured;              /* the easy handle holds the session's fixed options */
  int plain_get;               /* this transfer is an idempotent GET without a body */
  size_t max_body;
  long timeout;                /* ms, for the safety deadline */
  double started;              /* monotonic seconds */
  membuf body, head;           /* owned: response body, header lines of the last response */
  char errbuf[CURL_ERROR_SIZE];
} xfer;

struct xs2a_session {
  int open;
  CURLSH *share;               /* owned */
  CURLM *multi;                /* owned */
  xfer *xfers;                 /* owned list */
  xfer *pool;                  /* owned: finished transfers kept for reuse (easy handle
                                * and buffers, wiped), linked by next */
  int npool;
  lua_Integer next_id;
  /* TLS objects parsed once per session and installed into each new
   * connection's SSL_CTX by ssl_ctx_setup (up-referenced, freed on close) */
  X509 *cert;                  /* identity certificate (from an identity or cert_file), NULL = none */
  STACK_OF(X509) *chain;       /* its extra certificates, may be NULL */
  EVP_PKEY *key;               /* its private key (never exported as PEM) */
  X509_STORE *store;           /* trust anchors: ca_file or the system store */
  char *ca_file;               /* owned copy of a path, NULL = system store */
  char *proxy;                 /* owned copy, NULL = no proxy at all */
  long connect_timeout, timeout;
  size_t max_body;
  int http2;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *dupstr(const char *s) {
  size_t n;
  char *p;
  if (s == NULL) return NULL;
  n = strlen(s) + 1;
  p = (char *)malloc(n);
  if (p != NULL) memcpy(p, s, n);
  return p;
}

/* Response bytes may carry tokens (an OAuth answer, a bank echoing the
 * Authorization header): a buffer is wiped before its memory goes back to
 * the allocator, also when it grows (no realloc, which would free the old
 * block as it is). */
static int membuf_add(membuf *b, const char *p, size_t n) {
  if (n > b->cap - b->len) {
    size_t cap = b->cap ? b->cap : 4096;
    char *np;
    while (cap - b->len < n) {
      if (cap > ((size_t)-1) / 2) return 0;
      cap *= 2;
    }
    np = (char *)malloc(cap);
    if (np == NULL) return 0;
    if (b->p != NULL) {
      memcpy(np, b->p, b->len);
      OPENSSL_cleanse(b->p, b->hi);
      free(b->p);
    }
    b->p = np;
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  if (b->len > b->hi) b->hi = b->len;
  return 1;
}

/* wipes what was written; keeps the memory when it is small */
static void membuf_wipe(membuf *b) {
  if (b->p != NULL) OPENSSL_cleanse(b->p, b->hi);
  b->len = b->hi = 0;
  if (b->cap > POOL_BUF_MAX) {
    free(b->p);
    b->p = NULL;
    b->cap = 0;
  }
}

static void membuf_free(membuf *b) {
  if (b->p != NULL) OPENSSL_cleanse(b->p, b->hi);
  free(b->p);
  b->p = NULL;
  b->len = b->cap = b->hi = 0;
}

/* RFC 9110 tchar: what a method or a header name may contain. */
static int is_token(const char *s, size_t n) {
  size_t i;
  if (n == 0) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) continue;
    if (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL) continue;
    return 0;
  }
  return 1;
}

/* ------------------------------------------------------------------ */
/* libcurl callbacks: plain C, never touch Lua                         */

/* CURLOPT_SSL_CTX_FUNCTION: called for each new connection, after
 * libcurl set up its SSL_CTX and before the handshake. Installs the trust
 * store and the identity that the session parsed once. */
static CURLcode ssl_ctx_setup(CURL *curl, void *sslctx, void *ud) {
  SSL_CTX *ctx = (SSL_CTX *)sslctx;
  xs2a_session *s = (xs2a_session *)ud;
  int i;
  (void)curl;
  SSL_CTX_set1_cert_store(ctx, s->store);
#ifdef SSL_OP_CLEANSE_PLAINTEXT
  /* wipe decrypted records (tokens) as soon as they are read */
  SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT);
#endif
#ifdef SSL_MODE_RELEASE_BUFFERS
  /* libcurl asks OpenSSL to free a connection's read buffer after every
   * read; with CLEANSE_PLAINTEXT each free first wipes the whole 16 KiB
   * buffer (about 10,000 instructions per response, a third of the
   * transport's overhead over a raw libcurl loop). The plaintext is already
   * wiped as it is read (above), so the buffer is kept for the
   * connection's life instead, and wiped when it is freed. */
  SSL_CTX_clear_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
#endif
  if (s->cert != NULL) {
    if (SSL_CTX_use_certificate(ctx, s->cert) != 1 || SSL_CTX_use_PrivateKey(ctx, s->key) != 1)
      return CURLE_SSL_CERTPROBLEM;
    for (i = 0; s->chain != NULL && i < sk_X509_num(s->chain); i++)
      if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(s->chain, i)) != 1) return CURLE_SSL_CERTPROBLEM;
  }
  return CURLE_OK;
}

static size_t on_body(char *ptr, size_t size, size_t n, void *ud) {
  xfer *x = (xfer *)ud;
  size_t len = size * n;
  if (len > x->max_body - x->body.len) { x->too_large = 1; return 0; }
  if (!membuf_add(&x->body, ptr, len)) { x->oom = 1; return 0; }
  return len;
}

static size_t on_header(char *ptr, size_t size, size_t n, void *ud) {
  xfer *x = (xfer *)ud;
  size_t len = size * n;
  /* a status line starts a new response (after 1xx): keep only the last */
  if (len >= 5 && memcmp(ptr, "HTTP/", 5) == 0) x->head.len = 0;
  if (len > MAX_HEADER_BYTES - x->head.len) { x->too_large = 2; return 0; }
  if (!membuf_add(&x->head, ptr, len)) { x->oom = 1; return 0; }
  return len;
}

/* ------------------------------------------------------------------ */
/* Transfers                                                           */

static void xfer_destroy(xfer *x) {
  if (x->easy != NULL) curl_easy_cleanup(x->easy);
  curl_slist_free_all(x->hdrs);
  membuf_free(&x->body);
  membuf_free(&x->head);
  free(x);
}

/* A finished transfer goes back to the session's pool (its easy handle
 * reset, its buffers wiped) while the session is open and the pool has
 * room: a new easy handle and its buffers cost more than the request. */
static void xfer_free(xs2a_session *s, xfer *x) {
  if (x->easy != NULL && x->state == XF_RUNNING && s->multi != NULL)
    curl_multi_remove_handle(s->multi, x->easy);
  if (s->open && x->easy != NULL && s->npool < POOL_MAX) {
    /* After an idempotent GET the handle keeps its options: the next
     * request sets every option that differs between requests. Anything
     * else (a body, which libcurl copied; another method; a fresh
     * connection; a failure) starts again from libcurl's defaults. */
    if (!x->plain_get || x->result != CURLE_OK || x->too_large || x->oom) {
      curl_easy_reset(x->easy);
      x->configured = 0;
    } else {
      curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    }
    curl_slist_free_all(x->hdrs);
    x->hdrs = NULL;
    membuf_wipe(&x->body);
    membuf_wipe(&x->head);
    x->next = s->pool;
    s->pool = x;
    s->npool++;
    return;
  }
  xfer_destroy(x);
}

/* a transfer from the pool (easy handle and buffers kept), or a new one */
static xfer *xfer_new(xs2a_session *s) {
  xfer *x = s->pool;
  if (x == NULL) return (xfer *)calloc(1, sizeof *x);
  s->pool = x->next;
  s->npool--;
  x->next = NULL;
  x->id = 0;
  x->result = CURLE_OK;
  x->too_large = x->oom = 0;
  x->plain_get = 0;
  x->errbuf[0] = '\0';
  return x;
}

static void xfer_unlink(xs2a_session *s, xfer *x) {
  xfer **pp;
  for (pp = &s->xfers; *pp != NULL; pp = &(*pp)->next)
    if (*pp == x) { *pp = x->next; return; }
}

/* frees transfers left behind by a raised error (never started, or whose
 * result could not be built) */
static void sweep(xs2a_session *s) {
  xfer **pp = &s->xfers;
  while (*pp != NULL) {
    xfer *x = *pp;
    if (x->state == XF_NEW || x->state == XF_CLAIMED) {
      *pp = x->next;
      xfer_free(s, x);
    } else {
      pp = &x->next;
    }
  }
}

static int add_header(xfer *x, const char *line) {
  struct curl_slist *l = curl_slist_append(x->hdrs, line);
  if (l == NULL) return 0;
  x->hdrs = l;
  return 1;
}

/* The field names session:request, submit and poll read and write, made
 * Lua strings once (upvalues of those three functions): a lookup with a
 * ready string costs less than lua_getfield/lua_setfield with a C string,
 * which LuaJIT hashes and interns again on every call. */
enum { K_IDEMPOTENT = 1, K_HEADER_LIST, K_TIMINGS, K_METHOD, K_URL, K_BODY, K_TIMEOUT, K_MAX_BODY,
       K_HEADERS, K_STATUS, K_REUSED, K_HTTP_VERSION, K_N = K_HTTP_VERSION,
       K_MT              /* and the session metatable, after the names */ };
static const char *const KEY_NAMES[K_N] = {
  "idempotent", "header_list", "timings", "method", "url", "body", "timeout", "max_body",
  "headers", "status", "reused", "http_version"
};

/* pushes t[key] (metamethods honoured, as lua_getfield); t at an absolute index */
static void get_key(lua_State *L, int t, int key) {
  lua_pushvalue(L, lua_upvalueindex(key));
  lua_gettable(L, t);
}

/* t[key] = the value on top, popped (t is a table this file made, at -2) */
static void set_key(lua_State *L, int key) {
  lua_pushvalue(L, lua_upvalueindex(key));
  lua_insert(L, -2);
  lua_rawset(L, -3);
}

/* Reads req (at idx) into a new easy handle. Raises for wrong types;
 * returns NULL with *why set for a request that must not be sent. */
static xfer *xfer_prepare(lua_State *L, xs2a_session *s, int idx, const char **why) {
  size_t method_len, url_len, body_len = 0, i;
  const char *method, *url, *body = NULL;
  long timeout = s->timeout;
  size_t max_body = s->max_body;
  int has_ctype = 0, has_expect = 0, idempotent, want_list, want_time;
  xfer *x;
  CURL *e;

  luaL_checktype(L, idx, LUA_TTABLE);
  /* safe to repeat? (read before the stack below grows; nil = by method) */
  get_key(L, idx, K_IDEMPOTENT);
  idempotent = lua_isnil(L, -1) ? -1 : lua_toboolean(L, -1);
  lua_pop(L, 1);
  get_key(L, idx, K_HEADER_LIST);
  want_list = lua_toboolean(L, -1);
  lua_pop(L, 1);
  get_key(L, idx, K_TIMINGS);
  want_time = lua_toboolean(L, -1);
  lua_pop(L, 1);
  get_key(L, idx, K_METHOD);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_pushliteral(L, "GET"); }
  if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "request: method must be a string");
  method = lua_tolstring(L, -1, &method_len);         /* kept on the stack */
  get_key(L, idx, K_URL);
  if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "request: url must be a string");
  url = lua_tolstring(L, -1, &url_len);
  get_key(L, idx, K_BODY);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "request: body must be a string or nil");
    body = lua_tolstring(L, -1, &body_len);
  }
  get_key(L, idx, K_TIMEOUT);
  if (!lua_isnil(L, -1)) {
    lua_Number t;
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "request: timeout must be a number (ms)");
    t = lua_tonumber(L, -1);
    if (!(t >= 1 && t <= MAX_TIMEOUT)) luaL_error(L, "request: timeout must be 1..%d ms", MAX_TIMEOUT);
    timeout = (long)t;
  }
  lua_pop(L, 1);
  get_key(L, idx, K_MAX_BODY);
  if (!lua_isnil(L, -1)) {
    lua_Number m;
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "request: max_body must be a number (bytes)");
    m = lua_tonumber(L, -1);
    if (!(m >= 1 && m <= (lua_Number)INT_MAX)) luaL_error(L, "request: max_body must be 1..%d bytes", INT_MAX);
    max_body = (size_t)m;
  }
  lua_pop(L, 1);
  get_key(L, idx, K_HEADERS);                      /* method, url, body, headers */
  if (!lua_isnil(L, -1) && !lua_istable(L, -1)) luaL_error(L, "request: headers must be a table");

  if (!is_token(method, method_len)) { *why = "method is not a valid token"; return NULL; }
  if (url_len < 8 || strncasecmp(url, "https://", 8) != 0) { *why = "url must start with https://"; return NULL; }
  for (i = 0; i < url_len; i++) {
    unsigned char c = (unsigned char)url[i];
    if (c <= 0x20 || c == 0x7f) { *why = "url contains a space or a control character"; return NULL; }
  }

  sweep(s);
  x = xfer_new(s);
  if (x == NULL) luaL_error(L, "request: out of memory");
  x->state = XF_NEW;
  x->next = s->xfers;          /* linked before anything can raise: close or sweep frees it */
  s->xfers = x;
  x->max_body = max_body;
  x->timeout = timeout;
  x->want_list = want_list;
  x->want_time = want_time;

  /* headers; a failure here leaves x NEW for sweep() */
  if (lua_istable(L, -1)) {
    lua_pushnil(L);                                     /* ..., headers, key */
    while (lua_next(L, -2) != 0) {                      /* ..., headers, key, value */
      size_t nlen, vlen, need;
      const char *name, *value;
      char small[512], *line;
      int added;
      if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "request: header names must be strings");
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "request: header values must be strings");
      value = lua_tolstring(L, -1, &vlen);              /* the value slot (a number becomes text there) */
      name = lua_tolstring(L, -2, &nlen);
      if (!is_token(name, nlen)) { *why = "header name is not a valid token"; goto reject; }
      if (memchr(value, '\r', vlen) != NULL || memchr(value, '\n', vlen) != NULL ||
          memchr(value, '\0', vlen) != NULL) {
        *why = "header value contains CR, LF or NUL";
        goto reject;
      }
      if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0) has_ctype = 1;
      if (nlen == 6 && strncasecmp(name, "expect", 6) == 0) has_expect = 1;
      /* "Name: value", or "Name;" (libcurl's way to send an empty value),
       * built in C memory: no Lua string per header */
      need = nlen + 2 + vlen + 1;
      line = need <= sizeof small ? small : (char *)malloc(need);
      if (line == NULL) luaL_error(L, "request: out of memory");
      memcpy(line, name, nlen);
      if (vlen == 0) {
        line[nlen] = ';';
        line[nlen + 1] = '\0';
      } else {
        line[nlen] = ':';
        line[nlen + 1] = ' ';
        memcpy(line + nlen + 2, value, vlen);
        line[nlen + 2 + vlen] = '\0';
      }
      added = add_header(x, line);
      OPENSSL_cleanse(line, need);                      /* it may hold a token */
      if (line != small) free(line);
      if (!added) luaL_error(L, "request: out of memory");
      lua_pop(L, 1);                                    /* ..., headers, key */
    }
  }
  if (body == NULL && (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                       strcmp(method, "PATCH") == 0)) {
    body = "";                 /* send Content-Length: 0 */
    body_len = 0;
  }
  /* libcurl's defaults we do not want on a request with a body: a form
   * content type, Expect: 100-continue (it adds neither without a body) */
  if (body != NULL &&
      ((!has_ctype && !add_header(x, "Content-Type:")) || (!has_expect && !add_header(x, "Expect:"))))
    luaL_error(L, "request: out of memory");

  if (x->easy == NULL && (x->easy = curl_easy_init()) == NULL) luaL_error(L, "request: out of memory");
  e = x->easy;
  if (!x->configured) {
    /* the options every request of the session shares (they stay set while
     * the handle serves idempotent GETs, see xfer_free) */
    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)x);
    curl_easy_setopt(e, CURLOPT_SHARE, s->share);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* libcurl allocates its upload buffer for every transfer, and frees it
     * through wipe_free: the smallest it takes (bodies go out from
     * CURLOPT_COPYPOSTFIELDS, 64 KiB would only cost more to wipe) */
#if LIBCURL_VERSION_NUM >= 0x073e00
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
#endif
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTPS);
#endif
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, s->proxy != NULL ? s->proxy : "");
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    /* The trust store and the identity are parsed once per session and
     * installed by ssl_ctx_setup; libcurl loads no CA file or key itself
     * (it would parse them again for every new connection). */
    curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
    curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_setup);
    curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, (void *)s);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     s->http2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
    if (s->http2) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)x);
    x->configured = 1;
  }
  /* the options of this request */
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout);
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_body);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);

  if (idempotent < 0)
    idempotent = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
                 strcmp(method, "OPTIONS") == 0;
  /* libcurl silently resends a request whose reused connection died before
   * any answer came; the server may have acted on it by then. A request that
   * is not safe to repeat (a payment POST) therefore never rides on a reused
   * connection: it gets a fresh one, which libcurl does not retry. */
  if (!idempotent) curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
  if (body != NULL) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    if (curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body) != CURLE_OK)
      luaL_error(L, "request: out of memory");
    if (strcmp(method, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  } else if (strcmp(method, "GET") == 0) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    x->plain_get = idempotent;     /* the handle may keep its options (xfer_free) */
  } else if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  }
  lua_pop(L, 4);                                        /* method, url, body, headers */
  return x;

reject:
  xfer_unlink(s, x);
  xfer_free(s, x);
  return NULL;
}

static int xfer_start(xs2a_session *s, xfer *x) {
  if (curl_multi_add_handle(s->multi, x->easy) != CURLM_OK) return 0;
  x->state = XF_RUNNING;
  x->id = ++s->next_id;
  x->started = now_s();
  return 1;
}

/* moves finished transfers to XF_DONE; a transfer past its safety
 * deadline (libcurl's own timeout should always come first) is ended too */
static void collect(xs2a_session *s) {
  CURLMsg *m;
  int left;
  xfer *x;
  double t;
  while ((m = curl_multi_info_read(s->multi, &left)) != NULL) {
    CURL *e = m->easy_handle;
    CURLcode rc = m->data.result;
    if (m->msg != CURLMSG_DONE) continue;
    x = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
    if (x == NULL) continue;
    curl_multi_remove_handle(s->multi, e);
    x->result = rc;
    x->state = XF_DONE;
  }
  t = now_s();
  for (x = s->xfers; x != NULL; x = x->next) {
    if (x->state == XF_RUNNING &&
        t - x->started > (double)(x->timeout + s->connect_timeout) / 1000.0 + 5.0) {
      curl_multi_remove_handle(s->multi, x->easy);
      x->result = CURLE_OPERATION_TIMEDOUT;
      x->state = XF_DONE;
    }
  }
}

static void drive(xs2a_session *s, int wait_ms) {
  int running = 0;
  curl_multi_perform(s->multi, &running);
  collect(s);
  if (wait_ms > 0 && running > 0) {
    int n = 0;
#if LIBCURL_VERSION_NUM >= 0x074200
    curl_multi_poll(s->multi, NULL, 0, wait_ms, &n);
#else
    curl_multi_wait(s->multi, NULL, 0, wait_ms, &n);
#endif
    curl_multi_perform(s->multi, &running);
    collect(s);
  }
}

static int count_state(xs2a_session *s, int state) {
  int n = 0;
  xfer *x;
  for (x = s->xfers; x != NULL; x = x->next) n += (x->state == state);
  return n;
}

/* ------------------------------------------------------------------ */
/* Results                                                             */

/* With TLS 1.3 the client finishes its handshake first; a server that
 * rejects the client certificate says so with an alert on the first read
 * or write. The request was not processed: report it as a TLS failure. */
static int cert_alert(const char *msg) {
  if (strstr(msg, "SSL routines") == NULL || strstr(msg, " alert ") == NULL) return 0;
  return strstr(msg, "certificate") != NULL || strstr(msg, "unknown ca") != NULL ||
         strstr(msg, "access denied") != NULL || strstr(msg, "handshake failure") != NULL;
}

/* Whether any byte of the request may have left: libcurl counted request
 * bytes as issued (CURLINFO_REQUEST_SIZE), or the transfer got past the
 * connection phase (CURLINFO_PRETRANSFER_TIME, set just before the request
 * is written). Only when both say no is the request surely unsent. */
static int maybe_sent(xfer *x) {
  long issued = 0;
  curl_off_t pre = 0;
  curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &issued);
  curl_easy_getinfo(x->easy, CURLINFO_PRETRANSFER_TIME_T, &pre);
  return issued != 0 || pre != 0;
}

/* The code of a failed transfer. The codes resolve, connect, tls,
 * client_cert and bad_request mean "never sent" to the Lua layer (which may
 * then retry even a payment); they are given only when maybe_sent() says no
 * request byte left, or (TLS 1.3) when the server's own alert says it
 * refused the client certificate: the server then never processed the
 * request. Anything else that failed after the request may have left is
 * reported with a code that means "maybe sent". */
static const char *error_code(xfer *x) {
  int sent;
  if (x->too_large) return "too_large";
  sent = maybe_sent(x);
  switch (x->result) {
    case CURLE_OPERATION_TIMEDOUT: return sent ? "timeout" : "connect";
    case CURLE_COULDNT_CONNECT: return sent ? "recv" : "connect";
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY: return sent ? "recv" : "resolve";
    case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_CIPHER: case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE: case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED: case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
      return sent ? (cert_alert(x->errbuf) ? "tls" : "recv") : "tls";
    case CURLE_SSL_CERTPROBLEM: return sent ? "recv" : "client_cert";
    case CURLE_FILESIZE_EXCEEDED: return "too_large";
    case CURLE_SEND_ERROR: return cert_alert(x->errbuf) ? "tls" : "send";
    case CURLE_RECV_ERROR: return cert_alert(x->errbuf) ? "tls" : "recv";
    case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE: return "recv";
    case CURLE_HTTP2: case CURLE_HTTP2_STREAM: case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING: case CURLE_HTTP3: case CURLE_QUIC_CONNECT_ERROR:
    case CURLE_TOO_MANY_REDIRECTS:
      return "protocol";
    /* before sending: a URL libcurl refuses; after: an answer that is not
     * HTTP ("Received HTTP/0.9") */
    case CURLE_URL_MALFORMAT: case CURLE_UNSUPPORTED_PROTOCOL: return sent ? "protocol" : "bad_request";
    default: return "other";
  }
}

/* nil, message, code */
static int push_error(lua_State *L, xfer *x) {
  const char *code = error_code(x);
  lua_pushnil(L);
  if (x->too_large == 2)
    lua_pushfstring(L, "request: the response's header lines exceed their size cap (%d bytes)",
                    MAX_HEADER_BYTES);
  else if (x->too_large || x->result == CURLE_FILESIZE_EXCEEDED)
    lua_pushfstring(L, "request: the response body exceeds the size cap (%d bytes)", (int)x->max_body);
  else if (x->oom)
    lua_pushliteral(L, "request: out of memory while reading the response");
  else if (x->errbuf[0] != '\0' && strcmp(x->errbuf, curl_easy_strerror(x->result)) != 0)
    lua_pushfstring(L, "request: %s (%s)", curl_easy_strerror(x->result), x->errbuf);
  else
    lua_pushfstring(L, "request: %s", curl_easy_strerror(x->result));
  lua_pushstring(L, code);
  return 3;
}

static void set_time(lua_State *L, CURL *e, CURLINFO info, const char *name) {
  curl_off_t us = 0;
  curl_easy_getinfo(e, info, &us);
  lua_pushnumber(L, (lua_Number)us / 1e6);
  lua_setfield(L, -2, name);
}

/* Rewrites the raw header block in place as "line\n" records: CR dropped,
 * obsolete folded lines joined to the previous one with a space, stopping
 * at the blank line (trailers are ignored). Returns the new length. */
static size_t unfold(char *buf, size_t len) {
  size_t r = 0, w = 0;
  int first = 1;
  while (r < len) {
    char *eol = (char *)memchr(buf + r, '\n', len - r);
    size_t n = (size_t)((eol != NULL ? eol - buf : (ptrdiff_t)len) - (ptrdiff_t)r);
    size_t next = r + n + (eol != NULL ? 1 : 0);
    if (n > 0 && buf[r + n - 1] == '\r') n--;
    if (!first && n == 0) break;
    if (!first && (buf[r] == ' ' || buf[r] == '\t') && w > 0) {
      while (n > 0 && (buf[r] == ' ' || buf[r] == '\t')) { r++; n--; }
      buf[w - 1] = ' ';                         /* replaces the previous newline */
    }
    memmove(buf + w, buf + r, n);
    w += n;
    buf[w++] = '\n';
    first = 0;
    r = next;
  }
  return w;
}

static void trim(const char **p, size_t *n) {
  while (*n > 0 && (**p == ' ' || **p == '\t')) { (*p)++; (*n)--; }
  while (*n > 0 && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t')) (*n)--;
}

/* headers and header_list from the header block of the final response;
 * the table res is on top. Works in place on the buffer, which is ours. */
#define SCAN_MAX 64        /* header lines whose names push_headers compares */

static void push_headers(lua_State *L, xfer *x) {
  char *p = x->head.p, *end = NULL, *q;
  int first = 1, n = 0, list = x->want_list, count = 0, dups = 0, i;
  const char *names[SCAN_MAX];
  size_t nlens[SCAN_MAX];
  if (p != NULL) end = p + unfold(p, x->head.len);   /* no arithmetic on NULL */
  /* First pass: how many header lines, and whether a name repeats (any
   * case). The table is made at its size (a bank's dozen headers cause no
   * rehash), and without a repeated name no line needs to look up what an
   * earlier one stored. */
  for (q = p; q != NULL && q < end;) {
    char *eol = (char *)memchr(q, '\n', (size_t)(end - q));
    char *colon, *line = q;
    size_t len = (size_t)(eol - q);
    q = eol + 1;
    if (first) { first = 0; continue; }
    colon = (char *)memchr(line, ':', len);
    if (colon == NULL || colon == line) continue;
    if (count >= SCAN_MAX) { dups = 1; count++; continue; }   /* too many to compare: assume */
    for (i = 0; i < count && !dups; i++)
      if (nlens[i] == (size_t)(colon - line) && strncasecmp(names[i], line, nlens[i]) == 0) dups = 1;
    names[count] = line;
    nlens[count] = (size_t)(colon - line);
    count++;
  }
  first = 1;
  lua_createtable(L, 0, count);                         /* res, headers */
  if (list) lua_createtable(L, count, 0);               /* res, headers, list */
  while (p != NULL && p < end) {
    char *line = p, *colon;
    char *eol = (char *)memchr(p, '\n', (size_t)(end - p));
    size_t len = (size_t)(eol - p), nlen, vlen, k;
    const char *v;
    int hidx = list ? -3 : -2;                          /* headers, below lname and its copy */
    p = eol + 1;
    if (first) { first = 0; continue; }                 /* the status line */
    colon = (char *)memchr(line, ':', len);
    if (colon == NULL || colon == line) continue;       /* not a header line */
    nlen = (size_t)(colon - line);
    v = colon + 1;
    vlen = len - nlen - 1;
    trim(&v, &vlen);
    if (list) {
      lua_createtable(L, 2, 0);                         /* res, headers, list, pair */
      lua_pushlstring(L, line, nlen);
      lua_rawseti(L, -2, 1);
      lua_pushlstring(L, v, vlen);
      lua_rawseti(L, -2, 2);
      lua_rawseti(L, -2, ++n);                          /* res, headers, list */
    }
    for (k = 0; k < nlen; k++)
      if (line[k] >= 'A' && line[k] <= 'Z') line[k] = (char)(line[k] + 32);
    lua_pushlstring(L, line, nlen);                     /* ..., lname */
    if (!dups) {
      lua_pushlstring(L, v, vlen);                      /* ..., lname, value */
      lua_rawset(L, hidx - 1);                          /* res, headers[, list] */
      continue;
    }
    lua_pushvalue(L, -1);
    lua_rawget(L, hidx - 1);                            /* ..., lname, old */
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, v, vlen);
    } else {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, v, vlen);
      lua_concat(L, 3);                                 /* ..., lname, joined */
    }
    lua_rawset(L, hidx - 1);                            /* res, headers[, list] */
  }
  if (list) lua_setfield(L, -3, "header_list");         /* res, headers */
  lua_setfield(L, -2, "headers");                       /* res (fuzz/http_headers.c calls
                                                           this outside the keyed closures) */
}

static const char *http_version_name(long v) {
  switch (v) {
    case CURL_HTTP_VERSION_1_0: return "1.0";
    case CURL_HTTP_VERSION_1_1: return "1.1";
    case CURL_HTTP_VERSION_2_0: return "2";
#if LIBCURL_VERSION_NUM >= 0x074200
    case CURL_HTTP_VERSION_3: return "3";
#endif
    default: return "?";
  }
}

/* res | nil, message, code */
static int push_result(lua_State *L, xfer *x) {
  long status = 0, version = 0, connects = 0;
  if (x->result != CURLE_OK || x->too_large || x->oom) return push_error(L, x);
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &version);
  curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects);
  /* room for the five fields below and the four the client's pipeline
   * adds when this table becomes its result (no rehash) */
  lua_createtable(L, 0, 9);                             /* res */
  lua_pushinteger(L, (lua_Integer)status);
  set_key(L, K_STATUS);
  push_headers(L, x);
  lua_pushlstring(L, x->body.p != NULL ? x->body.p : "", x->body.len);
  set_key(L, K_BODY);
  lua_pushboolean(L, connects == 0);
  set_key(L, K_REUSED);
  lua_pushstring(L, http_version_name(version));
  set_key(L, K_HTTP_VERSION);
  if (x->want_time) {
    lua_createtable(L, 0, 5);                           /* res, time */
    set_time(L, x->easy, CURLINFO_NAMELOOKUP_TIME_T, "dns");
    set_time(L, x->easy, CURLINFO_CONNECT_TIME_T, "connect");
    set_time(L, x->easy, CURLINFO_APPCONNECT_TIME_T, "tls");
    set_time(L, x->easy, CURLINFO_STARTTRANSFER_TIME_T, "ttfb");
    set_time(L, x->easy, CURLINFO_TOTAL_TIME_T, "total");
    lua_setfield(L, -2, "time");                        /* res */
  }
  return 1;
}

/* ------------------------------------------------------------------ */
/* The userdata                                                        */

static void session_release(xs2a_session *s) {
  s->open = 0;                 /* xfer_free() pools nothing from here on */
  while (s->xfers != NULL) {
    xfer *x = s->xfers;
    s->xfers = x->next;
    xfer_free(s, x);
  }
  while (s->pool != NULL) {
    xfer *x = s->pool;
    s->pool = x->next;
    xfer_destroy(x);
  }
  s->npool = 0;
  if (s->multi != NULL) { curl_multi_cleanup(s->multi); s->multi = NULL; }
  if (s->share != NULL) { curl_share_cleanup(s->share); s->share = NULL; }
  if (s->cert != NULL) { X509_free(s->cert); s->cert = NULL; }
  if (s->chain != NULL) { sk_X509_pop_free(s->chain, X509_free); s->chain = NULL; }
  if (s->key != NULL) { EVP_PKEY_free(s->key); s->key = NULL; }
  if (s->store != NULL) { X509_STORE_free(s->store); s->store = NULL; }
  free(s->ca_file); s->ca_file = NULL;
  free(s->proxy); s->proxy = NULL;
  s->open = 0;
}

static xs2a_session *session_check(lua_State *L) {
  xs2a_session *s = (xs2a_session *)luaL_checkudata(L, 1, XS2A_SESSION);
  if (!s->open) luaL_error(L, "session is closed");
  return s;
}

/* session_check for request, submit and poll: the metatable is compared
 * with their upvalue (luaL_checkudata looks its name up in the registry) */
static xs2a_session *session_check_keyed(lua_State *L) {
  xs2a_session *s = (xs2a_session *)lua_touserdata(L, 1);
  if (s == NULL || !lua_getmetatable(L, 1)) return session_check(L);   /* raises */
  if (!lua_rawequal(L, -1, lua_upvalueindex(K_MT))) return session_check(L);
  lua_pop(L, 1);
  if (!s->open) luaL_error(L, "session is closed");
  return s;
}

static long opt_ms(lua_State *L, int t, const char *name, long def) {
  long v = def;
  lua_getfield(L, t, name);
  if (!lua_isnil(L, -1)) {
    lua_Number n;
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "http_session: option '%s' must be a number (ms)", name);
    n = lua_tonumber(L, -1);
    if (!(n >= 1 && n <= MAX_TIMEOUT))
      luaL_error(L, "http_session: option '%s' must be 1..%d ms", name, MAX_TIMEOUT);
    v = (long)n;
  }
  lua_pop(L, 1);
  return v;
}

static const char *opt_str(lua_State *L, int t, const char *name) {
  const char *v = NULL;
  lua_getfield(L, t, name);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "http_session: option '%s' must be a string", name);
    v = lua_tostring(L, -1);
  }
  lua_pop(L, 1);   /* the string stays alive in the opts table */
  return v;
}

/* up-references the identity's certificate, chain and key (they stay
 * valid when the identity is closed) */
static int take_identity(xs2a_session *s, xs2a_identity *id) {
  X509 *cert = xs2a_identity_cert(id);
  EVP_PKEY *key = xs2a_identity_key(id);
  STACK_OF(X509) *chain = xs2a_identity_chain(id);
  if (cert == NULL || key == NULL || !X509_up_ref(cert)) return 0;
  s->cert = cert;
  if (!EVP_PKEY_up_ref(key)) return 0;
  s->key = key;
  if (chain != NULL && (s->chain = X509_chain_up_ref(chain)) == NULL) return 0;
  return 1;
}

/* the trust store of every connection: ca_file, or OpenSSL's default
 * paths (the system store); libcurl's partial-chain and trusted-first
 * behaviour is kept */
static int make_store(xs2a_session *s) {
  if ((s->store = X509_STORE_new()) == NULL) return 0;
  if (s->ca_file != NULL) {
    if (X509_STORE_load_file(s->store, s->ca_file) != 1) return 0;
  } else if (X509_STORE_set_default_paths(s->store) != 1) {
    return 0;
  }
  X509_STORE_set_flags(s->store, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_TRUSTED_FIRST);
  return 1;
}

static int readable(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return 0;
  fclose(f);
  return 1;
}

/* core.http_session(opts) -> Session | nil, message, code */
static int session_new(lua_State *L) {
  xs2a_session *s;
  xs2a_identity *id = NULL;
  const char *ca_file, *cert_file, *key_file, *proxy;
  long connect_timeout, timeout;
  size_t max_body = DEFAULT_MAX_BODY;
  int http2 = 1;

  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "identity");
  if (lua_toboolean(L, -1)) id = xs2a_checkidentity(L, -1);   /* nil or false: none */
  lua_pop(L, 1);
  ca_file = opt_str(L, 1, "ca_file");
  cert_file = opt_str(L, 1, "cert_file");
  key_file = opt_str(L, 1, "key_file");
  proxy = opt_str(L, 1, "proxy");
  connect_timeout = opt_ms(L, 1, "connect_timeout", DEFAULT_CONNECT_TIMEOUT);
  timeout = opt_ms(L, 1, "timeout", DEFAULT_TIMEOUT);
  lua_getfield(L, 1, "max_body");
  if (!lua_isnil(L, -1)) {
    lua_Number n;
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "http_session: option 'max_body' must be a number");
    n = lua_tonumber(L, -1);
    if (!(n >= 1 && n <= (lua_Number)INT_MAX))
      luaL_error(L, "http_session: option 'max_body' must be 1..%d bytes", INT_MAX);
    max_body = (size_t)n;
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "http2");
  if (!lua_isnil(L, -1)) http2 = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (id != NULL && cert_file != NULL)
    luaL_error(L, "http_session: give either identity or cert_file, not both");
  if (key_file != NULL && cert_file == NULL)
    luaL_error(L, "http_session: key_file needs cert_file");

  if (ca_file != NULL && !readable(ca_file))
    return xs2a_pusherror(L, "http_session", "cannot read ca_file", "tls");
  if (cert_file != NULL && !readable(cert_file))
    return xs2a_pusherror(L, "http_session", "cannot read cert_file", "client_cert");
  if (key_file != NULL && !readable(key_file))
    return xs2a_pusherror(L, "http_session", "cannot read key_file", "client_cert");
  if (cert_file != NULL) {
    /* parsed once, here, as an identity: libcurl never gets the paths */
    int base = lua_gettop(L);
    xs2a_identity_from_files(L, cert_file, key_file != NULL ? key_file : cert_file);
    if (lua_isnil(L, base + 1)) {
      const char *why = lua_tostring(L, base + 2);
      return xs2a_pusherror(L, "http_session", why != NULL ? why : "cannot load cert_file", "client_cert");
    }
    id = xs2a_checkidentity(L, base + 1);   /* stays on the stack until the session holds its own references */
  }

  s = (xs2a_session *)lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);                              /* closed: safe to collect */
  luaL_setmetatable(L, XS2A_SESSION);
  s->connect_timeout = connect_timeout;
  s->timeout = timeout;
  s->max_body = max_body;
  s->http2 = http2;
  s->open = 1;                                          /* from here on __gc releases */
  if ((ca_file != NULL && (s->ca_file = dupstr(ca_file)) == NULL) ||
      (proxy != NULL && (s->proxy = dupstr(proxy)) == NULL))
    goto oom;
  if (id != NULL && !take_identity(s, id)) {
    session_release(s);
    return xs2a_pusherror(L, "http_session", "cannot take the identity for TLS", "client_cert");
  }
  if (!make_store(s)) {
    session_release(s);
    return xs2a_pusherror(L, "http_session", "cannot load the trust store (ca_file)", "tls");
  }
  if ((s->share = curl_share_init()) == NULL || (s->multi = curl_multi_init()) == NULL)
    goto oom;
  curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
  curl_multi_setopt(s->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  /* libcurl's default (4 x the transfers attached right now) shrinks the
   * connection cache whenever parallel transfers finish, closing
   * connections that the next batch must open again */
  curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)MAX_CONNECTS);
  return 1;

oom:
  session_release(s);
  return xs2a_pusherror(L, "http_session", "out of memory", "other");
}

static int session_close(lua_State *L) {   /* close, __close and __gc */
  xs2a_session *s = (xs2a_session *)luaL_checkudata(L, 1, XS2A_SESSION);
  if (s->open) session_release(s);
  return 0;
}

/* session:request(req) -> res | nil, message, code  (blocking) */
static int session_request(lua_State *L) {
  xs2a_session *s = session_check_keyed(L);
  const char *why = NULL;
  xfer *x = xfer_prepare(L, s, 2, &why);
  if (x == NULL) return xs2a_pusherror(L, "request", why, "bad_request");
  if (!xfer_start(s, x)) luaL_error(L, "request: cannot add the transfer");
  while (x->state == XF_RUNNING) drive(s, DRIVE_SLICE);
  x->state = XF_CLAIMED;       /* freed by sweep() if building the result raises */
  {
    int n = push_result(L, x);
    xfer_unlink(s, x);
    xfer_free(s, x);
    return n;
  }
}

/* session:submit(req) -> id | nil, message, code */
static int session_submit(lua_State *L) {
  xs2a_session *s = session_check_keyed(L);
  const char *why = NULL;
  xfer *x = xfer_prepare(L, s, 2, &why);
  if (x == NULL) return xs2a_pusherror(L, "request", why, "bad_request");
  if (!xfer_start(s, x)) luaL_error(L, "submit: cannot add the transfer");
  drive(s, 0);                 /* start connecting now */
  lua_pushinteger(L, x->id);
  return 1;
}

/* session:poll(wait_ms) -> { {id=, res=} | {id=, err=, code=}, ... }
 * Waits at most wait_ms for at least one transfer to finish. */
static int session_poll(lua_State *L) {
  xs2a_session *s = session_check_keyed(L);
  lua_Number wait = luaL_optnumber(L, 2, 0);
  double deadline;
  xfer *x;
  int n = 0;
  luaL_argcheck(L, wait >= 0 && wait <= MAX_TIMEOUT, 2, "wait_ms must be 0..86400000");
  deadline = now_s() + (double)wait / 1000.0;
  for (;;) {
    double left;
    if (count_state(s, XF_RUNNING) > 0) drive(s, 0);
    if (count_state(s, XF_DONE) > 0 || count_state(s, XF_RUNNING) == 0) break;
    left = (deadline - now_s()) * 1000.0;
    if (left < 1) break;
    drive(s, left > DRIVE_SLICE ? DRIVE_SLICE : (int)left);
    if (count_state(s, XF_DONE) > 0) break;
  }
  lua_newtable(L);                                      /* list */
  for (x = s->xfers; x != NULL; x = x->next) {
    int r;
    if (x->state != XF_DONE) continue;
    lua_createtable(L, 0, 3);                           /* list, entry */
    lua_pushinteger(L, x->id);
    lua_setfield(L, -2, "id");
    r = push_result(L, x);                              /* list, entry, res | nil, msg, code */
    if (r == 1) {
      lua_setfield(L, -2, "res");
    } else {
      lua_setfield(L, -4, "code");
      lua_setfield(L, -3, "err");
      lua_pop(L, 1);
    }
    lua_rawseti(L, -2, ++n);                            /* list */
  }
  /* every result is in Lua now: release the transfers */
  for (x = s->xfers; x != NULL; x = x->next)
    if (x->state == XF_DONE) x->state = XF_CLAIMED;
  sweep(s);
  return 1;
}

static int session_pending(lua_State *L) {
  xs2a_session *s = session_check(L);
  lua_pushinteger(L, count_state(s, XF_RUNNING) + count_state(s, XF_DONE));
  return 1;
}

static int session_tostring(lua_State *L) {
  xs2a_session *s = (xs2a_session *)luaL_checkudata(L, 1, XS2A_SESSION);
  if (!s->open) lua_pushliteral(L, "xs2a.Session (closed)");
  else lua_pushfstring(L, "xs2a.Session (%d pending)",
                       count_state(s, XF_RUNNING) + count_state(s, XF_DONE));
  return 1;
}

static const luaL_Reg session_methods[] = {
  {"request", session_request}, {"submit", session_submit}, {"poll", session_poll},
  {"pending", session_pending}, {"close", session_close}, {NULL, NULL}
};
static const luaL_Reg session_meta[] = {
  {"__gc", session_close}, {"__close", session_close}, {"__tostring", session_tostring},
  {NULL, NULL}
};

/* libcurl's memory, wiped before it is given back. libcurl keeps its own
 * copies of what a request carries and of what the answer brought: the
 * header lines (an Authorization: Bearer token, PSU-ID), the request it
 * assembles from them, a form body (a refresh token, an authorisation
 * code), its download buffer (a token endpoint's answer). Through these
 * functions none of them stays readable in freed memory. The size of a
 * block is the allocator's own (malloc_usable_size), so a block libcurl did
 * not allocate itself is still freed correctly. A block that grows moves to
 * a new one and the old one is wiped (realloc would leave the old bytes in
 * the free list); a block that shrinks stays where it is. */
#ifdef __GLIBC__
#define XS2A_BLOCK_SIZE(p) malloc_usable_size(p)
#if __GLIBC_PREREQ(2, 25)
/* the C library's (vectorised) memset, which the compiler may not drop;
 * OPENSSL_cleanse clears 8 bytes a round, and libcurl frees two 16 KiB
 * buffers per transfer */
#define XS2A_WIPE(p, n) explicit_bzero((p), (n))
#endif
#endif
#ifndef XS2A_WIPE
#define XS2A_WIPE(p, n) OPENSSL_cleanse((p), (n))
#endif

#ifdef XS2A_BLOCK_SIZE
/* the block http_global_init hands to curl_free() to learn whether libcurl
 * took these functions (set and read during that call only) */
static const void *wipe_probe = NULL;
static int wipe_probe_seen = 0;

static void wipe_free(void *p) {
  if (p == NULL) return;
  if (p == wipe_probe) wipe_probe_seen = 1;
  XS2A_WIPE(p, XS2A_BLOCK_SIZE(p));
  free(p);
}

static void *wipe_realloc(void *p, size_t n) {
  size_t old;
  void *q;
  if (p == NULL) return malloc(n);
  if (n == 0) {                     /* realloc(p, 0) frees p (glibc); so do we */
    wipe_free(p);
    return NULL;
  }
  old = XS2A_BLOCK_SIZE(p);
  if (n <= old) return p;
  if ((q = malloc(n)) == NULL) return NULL;   /* p stays valid, as with realloc */
  memcpy(q, p, old);
  wipe_free(p);
  return q;
}
#endif

/* Initialises libcurl once per process, with the wiping functions when the
 * C library can tell a block's size. libcurl takes memory functions only
 * from the first initialisation in the process: when another library of the
 * process initialised it first, it keeps that library's (plain) functions,
 * and core.curl_wipes_memory says false. */
static void http_global_init(lua_State *L) {
  CURLcode rc;
  if (http_curl_ready) return;
#ifdef XS2A_BLOCK_SIZE
  rc = curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, wipe_free, wipe_realloc, strdup, calloc);
  if (rc == CURLE_OK) {
    /* curl_free() is libcurl's free function: a string libcurl made, given
     * back through it, reaches wipe_free only if libcurl took ours */
    char *probe = curl_easy_escape(NULL, "xs2a", 4);
    if (probe != NULL) {
      wipe_probe = probe;
      curl_free(probe);
      wipe_probe = NULL;
      http_curl_wipes = wipe_probe_seen;
    }
  }
#else
  rc = curl_global_init(CURL_GLOBAL_DEFAULT);
#endif
  if (rc != CURLE_OK) luaL_error(L, "xs2a.core: curl_global_init failed");
  http_curl_ready = 1;
}

void xs2a_http_open(lua_State *L) {
  http_global_init(L);
  xs2a_newclass(L, XS2A_SESSION, session_methods, session_meta);
  {
    /* request, submit and poll again, as closures over the field names */
    static const luaL_Reg keyed[] = {
      {"request", session_request}, {"submit", session_submit}, {"poll", session_poll}, {NULL, NULL}
    };
    const luaL_Reg *r;
    int k;
    luaL_getmetatable(L, XS2A_SESSION);                 /* mt */
    lua_getfield(L, -1, "__index");                     /* mt, methods */
    for (r = keyed; r->name != NULL; r++) {
      for (k = 0; k < K_N; k++) lua_pushstring(L, KEY_NAMES[k]);
      lua_pushvalue(L, -2 - K_N);                       /* mt, methods, names..., mt */
      lua_pushcclosure(L, r->func, K_MT);
      lua_setfield(L, -2, r->name);
    }
    lua_pop(L, 2);
  }
  lua_pushcfunction(L, session_new);
  lua_setfield(L, -2, "http_session");
  lua_pushboolean(L, http_curl_wipes);
  lua_setfield(L, -2, "curl_wipes_memory");
}
