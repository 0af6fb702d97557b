/* pkcs11.c: identities whose private key stays in a PKCS#11 token (an HSM,
 * a smart card, SoftHSM2), used through OpenSSL's ENGINE API and libp11's
 * "pkcs11" engine (Debian: libengine-pkcs11-openssl).
 *
 * Why the ENGINE API, although OpenSSL 3 marks it deprecated: the engine is
 * what Debian 12 ships for PKCS#11 keys in OpenSSL (libp11 0.4.12); there is
 * no PKCS#11 provider package in bookworm, and an engine key is an ordinary
 * EVP_PKEY that EVP_PKEY_sign, SSL_CTX_use_PrivateKey (curl) and
 * SSL_use_PrivateKey (nginx cosockets) accept unchanged. So the deprecated
 * calls live in this one file, which alone defines OPENSSL_SUPPRESS_DEPRECATED
 * before including OpenSSL: that drops the deprecation attributes of
 * OpenSSL's declarations here, as -Wno-deprecated-declarations would, but
 * only for OpenSSL and only for this file, and it works the same in the
 * Makefile and in the rockspec (whose builtin backend has no per-file
 * flags). Every other file still fails the build (-Werror) on a deprecated
 * call.
 *
 * The key never leaves the token: the engine returns a key handle whose
 * private operations are PKCS#11 calls. The PIN is read from the option, the
 * named environment variable or a callback into a buffer that is wiped right
 * after the login. (libp11 itself keeps a copy inside its slot state, to log
 * in again after a fork; we cannot reach or wipe that copy.)
 *
 * One engine instance per process image (see "The engine" below). A
 * PKCS#11 session must not cross
 * fork(): an identity remembers the pid that opened it and refuses to work
 * in another process; open HSM identities in each worker (init_worker_by_lua
 * in nginx), not in the master. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ui.h>
#include <openssl/x509.h>
#include "core.h"

#define ENGINE_PACKAGES "the Debian package libengine-pkcs11-openssl"
#define MODULE_PACKAGES "Debian: softhsm2 for SoftHSM2, p11-kit for p11-kit-proxy.so, " \
                        "opensc-pkcs11 for smart cards, or your HSM vendor's module"
#define PIN_MAX 256

struct xs2a_p11 {
  pid_t pid;              /* the process that opened the session */
  char *key_uri;       /* owned; holds no PIN (refused at open) */
  char *token;         /* token label from the URI, or NULL */
  char *pin_env;       /* name of the PIN's environment variable, or NULL */
};

/* ------------------------------------------------------------------ */
/* The PIN: handed to libp11 through a UI method, never through a URI. */

typedef struct {
  char *pin;           /* OPENSSL_secure buffer or NULL */
  size_t len;
  int asked;
} pinbox;

static UI_METHOD *pin_ui;

static int pin_reader(UI *ui, UI_STRING *uis) {
  pinbox *box = (pinbox *)UI_get0_user_data(ui);
  switch (UI_get_string_type(uis)) {
    case UIT_PROMPT:
    case UIT_VERIFY:
      if (box == NULL || box->pin == NULL) return 0;
      box->asked = 1;
      return UI_set_result_ex(ui, uis, box->pin, (int)box->len) >= 0 ? 1 : 0;
    default:
      return 1;
  }
}

static UI_METHOD *get_pin_ui(void) {
  if (pin_ui == NULL && (pin_ui = UI_create_method("xs2a PKCS#11 PIN")) != NULL)
    UI_method_set_reader(pin_ui, pin_reader);
  return pin_ui;
}

static void pinbox_wipe(pinbox *box) {
  if (box->pin != NULL) OPENSSL_clear_free(box->pin, box->len + 1);
  box->pin = NULL;
  box->len = 0;
}

static int pinbox_set(pinbox *box, const char *s, size_t len) {
  pinbox_wipe(box);
  if (len > PIN_MAX || memchr(s, '\0', len) != NULL) return 0;
  if ((box->pin = OPENSSL_malloc(len + 1)) == NULL) return 0;
  memcpy(box->pin, s, len);
  box->pin[len] = '\0';
  box->len = len;
  return 1;
}

/* Fills box from the PIN source: pin_fn (stack index of a function, or 0),
 * pin (string option, may be NULL), pin_env (variable name, may be NULL).
 * 0 ok (box may stay empty: no PIN given); else pushes nil, err, code -> 3. */
static int pin_fetch(lua_State *L, int pin_fn, const char *pin, size_t pin_len,
                     const char *pin_env, pinbox *box) {
  if (pin_fn != 0) {
    size_t n;
    const char *s;
    lua_pushvalue(L, pin_fn);
    if (lua_pcall(L, 0, 1, 0) != 0) {
      lua_pop(L, 1);                 /* the callback's message may hold anything */
      return xs2a_pusherror(L, "identity", "the PIN callback raised an error", "passphrase");
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 1);
      return xs2a_pusherror(L, "identity", "the PIN callback did not return a string", "passphrase");
    }
    s = lua_tolstring(L, -1, &n);
    n = pinbox_set(box, s, n);
    lua_pop(L, 1);
    if (!n) return xs2a_pusherror(L, "identity", "the PIN is not a usable string", "passphrase");
  } else if (pin != NULL) {
    if (!pinbox_set(box, pin, pin_len))
      return xs2a_pusherror(L, "identity", "the PIN is not a usable string", "passphrase");
  } else if (pin_env != NULL) {
    const char *v = getenv(pin_env);
    if (v == NULL) {
      lua_pushnil(L);
      lua_pushfstring(L, "identity: the PIN variable %s is not set", pin_env);
      lua_pushliteral(L, "passphrase");
      return 3;
    }
    if (!pinbox_set(box, v, strlen(v)))
      return xs2a_pusherror(L, "identity", "the PIN is not a usable string", "passphrase");
  }
  return 0;
}

/* ------------------------------------------------------------------ */
/* URIs                                                                */

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* the percent-decoded value of attribute name in the path of a pkcs11: URI,
 * OPENSSL_malloc'd, or NULL */
static char *uri_attr(const char *uri, const char *name) {
  size_t nl = strlen(name);
  const char *p = uri + 7;           /* after "pkcs11:" */
  while (*p != '\0' && *p != '?') {
    const char *end = p + strcspn(p, ";?");
    if ((size_t)(end - p) > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
      const char *v = p + nl + 1;
      char *out = OPENSSL_malloc((size_t)(end - v) + 1), *o = out;
      if (out == NULL) return NULL;
      while (v < end) {
        if (*v == '%' && end - v >= 3 && hexval(v[1]) >= 0 && hexval(v[2]) >= 0) {
          *o++ = (char)(hexval(v[1]) * 16 + hexval(v[2]));
          v += 3;
        } else {
          *o++ = *v++;
        }
      }
      *o = '\0';
      return out;
    }
    p = *end == ';' ? end + 1 : end;
  }
  return NULL;
}

int xs2a_p11_is_uri(const char *s, size_t len) {
  return len > 7 && strncmp(s, "pkcs11:", 7) == 0;
}

/* ------------------------------------------------------------------ */
/* The engine: one instance per process image, made on first use and never
 * released. OpenSSL 3 loads an engine library only once per process, and
 * libp11 keeps its keys (which hold the engine) in its own context, so an
 * instance cannot go away and come back. libp11 is fork-aware: in a child
 * it initialises the module again before any use, so identities opened in
 * a worker after fork work, whether or not the master had loaded the
 * engine. The instance is made through the "dynamic" engine and kept out of
 * OpenSSL's engine list, so that it is only ever used for our identities. */

static ENGINE *engine;
static char *engine_module;

static int same_module(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* 0 ok, else pushes nil, err, code -> 3 */
static int engine_get(lua_State *L, const char *module) {
  char path[4096];
  const char *dir;
  ENGINE *e;
  int ok, n;
  if (module != NULL && access(module, R_OK) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "identity: PKCS#11 module %s not found (%s)", module, MODULE_PACKAGES);
    lua_pushliteral(L, "config");
    return 3;
  }
  if (engine != NULL) {
    if (!same_module(module, engine_module))
      return xs2a_pusherror(L, "identity", "one PKCS#11 module per process (p11-kit-proxy can join "
                            "several): use the module of the first token identity", "config");
    return 0;
  }
  dir = getenv("OPENSSL_ENGINES");
  if (dir != NULL) {
    n = snprintf(path, sizeof path, "%s/pkcs11.so", dir);
  } else {                           /* ENGINESDIR: "/usr/lib/x86_64-linux-gnu/engines-3" */
    const char *v = OpenSSL_version(OPENSSL_ENGINES_DIR), *q = strchr(v, '"');
    const char *q2 = q != NULL ? strchr(q + 1, '"') : NULL;
    n = q2 != NULL ? snprintf(path, sizeof path, "%.*s/pkcs11.so", (int)(q2 - q - 1), q + 1) : -1;
  }
  if (n < 0 || (size_t)n >= sizeof path || access(path, R_OK) != 0)
    return xs2a_pusherror(L, "identity", "the OpenSSL PKCS#11 engine (engines-3/pkcs11.so) is not installed: "
                          "install " ENGINE_PACKAGES, "config");
  ERR_set_mark();
  e = ENGINE_by_id("dynamic");
  ok = e != NULL && ENGINE_ctrl_cmd_string(e, "SO_PATH", path, 0) &&
       ENGINE_ctrl_cmd_string(e, "ID", "pkcs11", 0) &&
       ENGINE_ctrl_cmd_string(e, "LIST_ADD", "0", 0) &&
       ENGINE_ctrl_cmd_string(e, "LOAD", NULL, 0);
  if (ok) {
    ENGINE_ctrl_cmd_string(e, "QUIET", NULL, 1);       /* no messages on stderr */
    ok = (module == NULL || ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module, 0)) && ENGINE_init(e);
  }
  ERR_pop_to_mark();
  if (!ok) {
    ENGINE_free(e);
    return xs2a_pusherror(L, "identity", "cannot start the OpenSSL PKCS#11 engine (" ENGINE_PACKAGES ")",
                          "config");
  }
  if (module != NULL && (engine_module = OPENSSL_strdup(module)) == NULL) {
    ENGINE_finish(e);
    ENGINE_free(e);
    return xs2a_pusherror(L, "identity", "out of memory", "other");
  }
  engine = e;
  return 0;
}

/* Why a token load failed, from the error queue (cleared): a kind and text. */
static const char *classify(const char **kind) {
  unsigned long e;
  const char *why = "the token or the key was not found";
  *kind = "not_found";
  while ((e = ERR_get_error()) != 0) {
    const char *r = ERR_reason_error_string(e);
    if (r == NULL) continue;
    if (strstr(r, "PIN") != NULL || strstr(r, "Pin") != NULL || strstr(r, "pin") != NULL) {
      *kind = "passphrase";
      why = strstr(r, "ocked") != NULL ? "the token's PIN is locked" : "wrong PIN for the token";
    } else if (strstr(r, "load module") != NULL || strstr(r, "Load module") != NULL ||
               strstr(r, "module") != NULL) {
      if (strcmp(*kind, "passphrase") != 0) {
        *kind = "config";
        why = "cannot load the PKCS#11 module (" MODULE_PACKAGES ")";
      }
    }
  }
  return why;
}

/* ------------------------------------------------------------------ */
/* Opening                                                             */

static int load_key(lua_State *L, const char *uri, pinbox *box, EVP_PKEY **key) {
  const char *kind, *why;
  UI_METHOD *ui = get_pin_ui();
  ERR_clear_error();
  *key = ui != NULL ? ENGINE_load_private_key(engine, uri, ui, box) : NULL;
  if (*key != NULL) {
    ERR_clear_error();
    return 0;
  }
  why = classify(&kind);
  if (strcmp(kind, "not_found") == 0 && box->pin == NULL)
    why = "the key was not found and no PIN was given (a token shows its private keys only after login: give pin, pin_env or a pin callback)", kind = "passphrase";
  return xs2a_pusherror(L, "identity", why, kind);
}

static int load_cert(lua_State *L, const char *uri, X509 **cert) {
  struct { const char *id; X509 *cert; } params;
  params.id = uri;
  params.cert = NULL;
  ERR_clear_error();
  if (!ENGINE_ctrl_cmd(engine, "LOAD_CERT_CTRL", 0, &params, NULL, 1) || params.cert == NULL) {
    const char *kind, *why = classify(&kind);
    if (strcmp(kind, "passphrase") == 0) return xs2a_pusherror(L, "identity", why, kind);
    return xs2a_pusherror(L, "identity", "the certificate was not found in the token", "not_found");
  }
  *cert = params.cert;
  ERR_clear_error();
  return 0;
}

static int refuse_uri(lua_State *L, const char *uri) {
  if (strstr(uri, "pin-value") != NULL || strstr(uri, "pin-source") != NULL)
    return xs2a_pusherror(L, "identity", "a pkcs11: URI must not carry the PIN: use pin, pin_env or a pin callback",
                          "config");
  return 0;
}

void xs2a_p11_free(xs2a_p11 *p) {
  if (p == NULL) return;
  OPENSSL_free(p->key_uri);
  OPENSSL_free(p->token);
  OPENSSL_free(p->pin_env);
  OPENSSL_free(p);
}

/* Opens key_uri (and cert_uri when not NULL) from a token. The PIN comes
 * from pin_fn (stack index of a function, 0 = none), pin, or pin_env. On
 * success sets *out, *key (and *cert) and returns 0; else pushes nil, err,
 * code and returns 3. */
int xs2a_p11_open(lua_State *L, const char *module, const char *key_uri, const char *cert_uri,
                  int pin_fn, const char *pin, size_t pin_len, const char *pin_env,
                  xs2a_p11 **out, EVP_PKEY **key, X509 **cert) {
  pinbox box = {NULL, 0, 0};
  xs2a_p11 *p;
  int n;
  *out = NULL;
  *key = NULL;
  if ((n = refuse_uri(L, key_uri)) != 0 || (cert_uri != NULL && (n = refuse_uri(L, cert_uri)) != 0)) return n;
  if ((n = engine_get(L, module)) != 0) return n;
  if ((p = OPENSSL_zalloc(sizeof *p)) == NULL) return xs2a_pusherror(L, "identity", "out of memory", "other");
  p->pid = getpid();
  if ((p->key_uri = OPENSSL_strdup(key_uri)) == NULL ||
      (pin_env != NULL && (p->pin_env = OPENSSL_strdup(pin_env)) == NULL)) {
    xs2a_p11_free(p);
    return xs2a_pusherror(L, "identity", "out of memory", "other");
  }
  p->token = uri_attr(key_uri, "token");
  if ((n = pin_fetch(L, pin_fn, pin, pin_len, pin_env, &box)) != 0) {
    xs2a_p11_free(p);
    return n;
  }
  n = load_key(L, key_uri, &box, key);
  pinbox_wipe(&box);                  /* logged in (or failed): the PIN goes */
  if (n == 0 && cert_uri != NULL) {
    n = load_cert(L, cert_uri, cert);
    if (n != 0) {
      EVP_PKEY_free(*key);
      *key = NULL;
    }
  }
  if (n != 0) {
    xs2a_p11_free(p);
    return n;
  }
  *out = p;
  return 0;
}

/* Loads the key again after a signature failed (the token or its session
 * may be gone), once, with the PIN asked for again from its source: a PIN
 * given as a plain string was wiped after the first login. The caller has
 * dropped its key. 0 ok (new *key), else nil, err, code -> 3. */
int xs2a_p11_reopen(lua_State *L, xs2a_p11 *p, int pin_fn, EVP_PKEY **key) {
  pinbox box = {NULL, 0, 0};
  int n;
  *key = NULL;
  if (pin_fn == 0 && p->pin_env == NULL)
    return xs2a_pusherror(L, "identity", "the PIN was given as a string, which was wiped after login: "
                          "use pin_env or a pin callback to allow a re-login", "io");
  if ((n = pin_fetch(L, pin_fn, NULL, 0, p->pin_env, &box)) != 0) return n;
  n = load_key(L, p->key_uri, &box, key);
  pinbox_wipe(&box);
  return n;
}

int xs2a_p11_other_process(const xs2a_p11 *p) { return p != NULL && p->pid != getpid(); }
const char *xs2a_p11_token(const xs2a_p11 *p) { return p != NULL ? p->token : NULL; }
