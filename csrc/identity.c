/* identity.c: the TPP identity (certificate + private key) and certificate facts. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "core.h"

#define SIGN_SLOTS 6       /* sha256, sha384, sha512 x PKCS#1 v1.5 / PSS (EC: v1.5 slot) */

struct xs2a_identity {
  X509 *cert;              /* owned; NULL = closed */
  EVP_PKEY *key;           /* owned */
  STACK_OF(X509) *chain;   /* owned, may be NULL (no extra certificates) */
  /* Signing contexts made once per (hash, padding) and reused: EVP_PKEY_sign
   * on an initialised EVP_PKEY_CTX can be called again and again, which saves
   * the provider fetches of EVP_DigestSignInit on every signature. */
  EVP_PKEY_CTX *sctx[SIGN_SLOTS];
  EVP_MD *md[3];           /* fetched digests for the slots (EVP_sha256() and
                              friends would be fetched again on every use) */
  EVP_MD_CTX *dctx;        /* reused by _sign_berlin for its digests (of
                              public data: the body, the signing string) */
  const EVP_PKEY *typed;   /* the key whose facts are below (EVP_PKEY_base_id
                              searches the ENGINE tables under a lock,
                              EVP_PKEY_get_size asks the key's method) */
  int is_ec, too_big;
  xs2a_p11 *p11;           /* owned; non-NULL: the key is in a PKCS#11 token */
};

#define INPUT_LIMIT (4 * 1024 * 1024)   /* no credential file is this big */

/* ------------------------------------------------------------------ */
/* Inputs: a value is a path, PEM data or DER data.                    */

typedef struct {
  unsigned char *buf;   /* owned copy when read from a file (clear_free), else NULL */
  const unsigned char *data;   /* borrowed (Lua string) or buf */
  size_t len;
  size_t cap;           /* size of buf */
  int pem;              /* contains "-----BEGIN" */
} input;

static void input_free(input *in) {
  if (in->buf != NULL) OPENSSL_clear_free(in->buf, in->cap);
  in->buf = NULL;
  in->data = NULL;
  in->len = 0;
}

static int has_pem_armour(const unsigned char *s, size_t len) {
  static const char tag[] = "-----BEGIN";
  size_t i, n = sizeof tag - 1;
  if (len < n) return 0;
  for (i = 0; i + n <= len; i++)
    if (s[i] == '-' && memcmp(s + i, tag, n) == 0) return 1;
  return 0;
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* A path we may print: short printable text with a dot (no base64 key has one). */
static int printable_path(const char *s, size_t len) {
  size_t i;
  int dot = 0;
  if (len == 0 || len > 255) return 0;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c > 0x7e) return 0;
    if (c == '.') dot = 1;
  }
  return dot;
}

/* Reads the value into in; on failure pushes nil, err, code and returns 3.
 * what = "certificate", "private key", "PKCS#12". */
static int input_get(lua_State *L, const char *s, size_t len, const char *what,
                     input *in) {
  size_t cap = 0;
  int err;
  memset(in, 0, sizeof *in);
  if (has_pem_armour((const unsigned char *)s, len)) {
    in->data = (const unsigned char *)s;
    in->len = len;
    in->pem = 1;
    return 0;
  }
  if (memchr(s, '\0', len) != NULL || len > 4096 ||
      (len > 0 && (unsigned char)s[0] == 0x30 && !is_file(s))) {
    if (len > 0 && (unsigned char)s[0] == 0x30) {   /* DER bytes */
      in->data = (const unsigned char *)s;
      in->len = len;
      return 0;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "identity: %s is neither a readable file, PEM nor DER", what);
    lua_pushliteral(L, "parse");
    return 3;
  }
  /* (a key file may be a symbolic link, as mounted secrets are) */
  err = xs2a_read_file(s, INPUT_LIMIT, 0, &in->buf, &in->len, &cap);
  if (err != 0) {                          /* (nothing was kept) */
    lua_pushnil(L);
    if (printable_path(s, len))
      lua_pushfstring(L, "identity: cannot read %s file '%s': %s", what, s, strerror(err));
    else
      lua_pushfstring(L, "identity: cannot read %s file: %s", what, strerror(err));
    lua_pushliteral(L, "io");
    return 3;
  }
  in->cap = cap;
  in->data = in->buf;
  in->pem = has_pem_armour(in->data, in->len);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Passphrase callback: never prompts, remembers that it was asked.   */

typedef struct {
  const char *pass;   /* borrowed; NULL = none given */
  size_t len;
  int asked;
} passctx;

static int pass_cb(char *buf, int size, int rwflag, void *u) {
  passctx *p = (passctx *)u;
  (void)rwflag;
  p->asked = 1;
  if (p->pass == NULL || size <= 0 || p->len > (size_t)size) return -1;
  memcpy(buf, p->pass, p->len);
  return (int)p->len;
}

/* ------------------------------------------------------------------ */
/* Parsing                                                             */

X509 *xs2a_parsecert(const char *s, size_t len) {
  X509 *x = NULL;
  if (len > INT_MAX) return NULL;
  if (has_pem_armour((const unsigned char *)s, len)) {
    BIO *b = BIO_new_mem_buf(s, (int)len);
    if (b != NULL) {
      x = PEM_read_bio_X509(b, NULL, NULL, NULL);
      BIO_free(b);
    }
  } else {
    const unsigned char *p = (const unsigned char *)s;
    x = d2i_X509(NULL, &p, (long)len);
  }
  ERR_clear_error();
  return x;
}

/* certificate plus any further certificates from PEM; first from DER */
static int load_certs(const input *in, X509 **cert, STACK_OF(X509) **chain) {
  if (in->pem) {
    BIO *b = BIO_new_mem_buf(in->data, (int)in->len);
    X509 *x;
    if (b == NULL) return 0;
    *cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
    while (*cert != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
      if (*chain == NULL && (*chain = sk_X509_new_null()) == NULL) { X509_free(x); break; }
      if (!sk_X509_push(*chain, x)) { X509_free(x); break; }
    }
    BIO_free(b);
  } else {
    const unsigned char *p = in->data;
    *cert = d2i_X509(NULL, &p, (long)in->len);
  }
  ERR_clear_error();
  return *cert != NULL;
}

/* 0 ok; else pushes nil, err, code and returns 3 */
static int load_key(lua_State *L, const input *in, passctx *pc, EVP_PKEY **key) {
  if (in->pem) {
    BIO *b = BIO_new_mem_buf(in->data, (int)in->len);
    if (b != NULL) {
      *key = PEM_read_bio_PrivateKey(b, NULL, pass_cb, pc);
      BIO_free(b);
    }
  } else {
    const unsigned char *p = in->data;
    *key = d2i_AutoPrivateKey(NULL, &p, (long)in->len);
    if (*key == NULL) {
      BIO *b = BIO_new_mem_buf(in->data, (int)in->len);
      ERR_clear_error();
      if (b != NULL) {
        *key = d2i_PKCS8PrivateKey_bio(b, NULL, pass_cb, pc);
        BIO_free(b);
      }
    }
  }
  ERR_clear_error();
  if (*key != NULL) return 0;
  if (pc->asked && pc->pass == NULL)
    return xs2a_pusherror(L, "identity", "the private key is encrypted and no passphrase was given", "passphrase");
  if (pc->asked)
    return xs2a_pusherror(L, "identity", "wrong passphrase for the private key", "passphrase");
  return xs2a_pusherror(L, "identity", "private key is not a valid PEM or DER key", "parse");
}

static int check_key_type(lua_State *L, EVP_PKEY *key) {
  int id = EVP_PKEY_base_id(key);
  if (id == EVP_PKEY_RSA || id == EVP_PKEY_EC) return 0;
  lua_pushnil(L);
  lua_pushfstring(L, "identity: unsupported key type %s (RSA or EC needed)",
                  OBJ_nid2sn(id) ? OBJ_nid2sn(id) : "unknown");
  lua_pushliteral(L, "unsupported");
  return 3;
}

static int load_p12(lua_State *L, const input *in, passctx *pc, xs2a_identity *id) {
  const unsigned char *p = in->data;
  PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)in->len);
  const char *pass = pc->pass;
  int ok;
  if (p12 == NULL)
    return xs2a_pusherror(L, "identity", "PKCS#12 data is not valid DER", "parse");
  if (PKCS12_mac_present(p12)) {
    if (pass != NULL) {
      ok = PKCS12_verify_mac(p12, pass, (int)pc->len);
    } else {
      ok = PKCS12_verify_mac(p12, NULL, 0) || PKCS12_verify_mac(p12, "", 0);
      if (ok) pass = PKCS12_verify_mac(p12, NULL, 0) ? NULL : "";
    }
    if (!ok) {
      PKCS12_free(p12);
      return xs2a_pusherror(L, "identity", pc->pass == NULL
                            ? "the PKCS#12 bundle is protected and no passphrase was given"
                            : "wrong passphrase for the PKCS#12 bundle", "passphrase");
    }
  }
  ok = PKCS12_parse(p12, pass, &id->key, &id->cert, &id->chain);
  PKCS12_free(p12);
  if (!ok) return xs2a_pushsslerror(L, "identity: cannot read the PKCS#12 bundle");
  ERR_clear_error();
  if (id->chain != NULL && sk_X509_num(id->chain) == 0) {
    sk_X509_free(id->chain);
    id->chain = NULL;
  }
  if (id->cert == NULL || id->key == NULL)
    return xs2a_pusherror(L, "identity", "the PKCS#12 bundle lacks a certificate or a key", "parse");
  return 0;
}

/* ------------------------------------------------------------------ */
/* The userdata                                                        */

void xs2a_identity_drop_key(xs2a_identity *id) {
  int i;
  for (i = 0; i < SIGN_SLOTS; i++) {   /* the contexts hold the key */
    EVP_PKEY_CTX_free(id->sctx[i]);
    id->sctx[i] = NULL;
  }
  EVP_PKEY_free(id->key);             /* clears key memory */
  id->key = NULL;
  id->typed = NULL;
}

static void identity_free(xs2a_identity *id) {
  int i;
  xs2a_identity_drop_key(id);
  for (i = 0; i < 3; i++) {
    EVP_MD_free(id->md[i]);
    id->md[i] = NULL;
  }
  EVP_MD_CTX_free(id->dctx);
  id->dctx = NULL;
  if (id->cert != NULL) { X509_free(id->cert); id->cert = NULL; }
  if (id->p11 != NULL) { xs2a_p11_free(id->p11); id->p11 = NULL; }  /* after the key */
  if (id->chain != NULL) { sk_X509_pop_free(id->chain, X509_free); id->chain = NULL; }
}

xs2a_identity *xs2a_checkidentity(lua_State *L, int idx) {
  xs2a_identity *id = (xs2a_identity *)luaL_checkudata(L, idx, XS2A_IDENTITY);
  if (id->cert == NULL) luaL_error(L, "identity is closed");
  return id;
}

X509 *xs2a_identity_cert(xs2a_identity *id) { return id->cert; }
EVP_PKEY *xs2a_identity_key(xs2a_identity *id) { return id->key; }
STACK_OF(X509) *xs2a_identity_chain(xs2a_identity *id) { return id->chain; }

static const char *opt_string(lua_State *L, int t, const char *name, size_t *len) {
  const char *s = NULL;
  lua_getfield(L, t, name);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "identity: option '%s' must be a string", name);
    s = lua_tolstring(L, -1, len);
  }
  lua_pop(L, 1);   /* the string stays alive: it is still in the opts table */
  return s;
}

/* The key-matches-certificate check for a key we cannot read: sign random
 * bytes with it and verify with the certificate's public key. */
static int roundtrip_ok(xs2a_identity *id) {
  unsigned char data[32], sig[1024];
  size_t siglen = sizeof sig;
  xs2a_sigopts o;
  EVP_MD_CTX *ctx = NULL;
  int ok = 0;
  o.md = EVP_sha256();
  o.pss = 0;
  o.ec_raw = 0;
  if (RAND_bytes(data, sizeof data) == 1 && EVP_PKEY_get_size(id->key) <= (int)sizeof sig &&
      xs2a_identity_sign_raw(id, &o, data, sizeof data, sig, &siglen) &&
      (ctx = EVP_MD_CTX_new()) != NULL &&
      EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, X509_get0_pubkey(id->cert)) == 1 &&
      EVP_DigestVerify(ctx, sig, siglen, data, sizeof data) == 1)
    ok = 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

/* identity from a PKCS#11 token: key (and maybe cert) are pkcs11: URIs. The
 * identity is on top of the stack; pin_fn is the stack index of a PIN
 * callback or 0. 0 ok, else nil, err, code pushed and 3 returned. */
static int open_hsm(lua_State *L, xs2a_identity *id, const char *cert_s, size_t cert_len,
                    const char *key_s, const char *module_s, int pin_fn, const char *pin_s,
                    size_t pin_len, const char *pinenv_s) {
  int from_token = xs2a_p11_is_uri(cert_s, cert_len), n;
  X509 *tcert = NULL;
  input in;
  if (!from_token) {
    if ((n = input_get(L, cert_s, cert_len, "certificate", &in)) != 0) return n;
    n = load_certs(&in, &id->cert, &id->chain);
    input_free(&in);
    if (!n) return xs2a_pusherror(L, "identity", "certificate is not a valid PEM or DER certificate", "parse");
  }
  if ((n = xs2a_p11_open(L, module_s, key_s, from_token ? cert_s : NULL, pin_fn, pin_s, pin_len,
                         pinenv_s, &id->p11, &id->key, &tcert)) != 0)
    return n;
  if (from_token) id->cert = tcert;
  if (pin_fn != 0) {                 /* kept to log in again if the session is lost */
    lua_pushvalue(L, pin_fn);
    xs2a_setuservalue(L, -2, 1);
  }
  if ((n = check_key_type(L, id->key)) != 0) return n;
  if (!roundtrip_ok(id))
    return xs2a_pusherror(L, "identity", "the token's key does not match the certificate "
                          "(a test signature did not verify)", "mismatch");
  return 0;
}

/* core.identity{cert=, key=, passphrase=} | {p12=, passphrase=}
 * | {cert=, key="pkcs11:...", pin= | pin_env=, module=} */
static int identity_new(lua_State *L) {
  size_t cert_len = 0, key_len = 0, p12_len = 0, pass_len = 0, pin_len = 0, mod_len = 0, env_len = 0;
  const char *cert_s, *key_s, *p12_s, *pass_s, *pin_s = NULL, *module_s, *pinenv_s;
  xs2a_identity *id;
  passctx pc;
  input in;
  int n, hsm, pin_fn = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  cert_s = opt_string(L, 1, "cert", &cert_len);
  key_s = opt_string(L, 1, "key", &key_len);
  p12_s = opt_string(L, 1, "p12", &p12_len);
  pass_s = opt_string(L, 1, "passphrase", &pass_len);
  module_s = opt_string(L, 1, "module", &mod_len);
  pinenv_s = opt_string(L, 1, "pin_env", &env_len);
  lua_getfield(L, 1, "pin");                     /* stays at index 2 */
  if (lua_type(L, 2) == LUA_TFUNCTION) pin_fn = 2;
  else if (lua_type(L, 2) == LUA_TSTRING) pin_s = lua_tolstring(L, 2, &pin_len);
  else if (!lua_isnil(L, 2)) return luaL_error(L, "identity: option 'pin' must be a string or a function");
  if (p12_s == NULL && cert_s == NULL)
    return luaL_error(L, "identity: give either cert (and key) or p12");
  if (p12_s != NULL && (cert_s != NULL || key_s != NULL))
    return luaL_error(L, "identity: give either p12 or cert/key, not both");
  hsm = key_s != NULL && xs2a_p11_is_uri(key_s, key_len);
  if (!hsm && (pin_fn != 0 || pin_s != NULL || pinenv_s != NULL || module_s != NULL))
    return luaL_error(L, "identity: options pin, pin_env and module are for a key in a token (key = \"pkcs11:...\")");
  if (!hsm && cert_s != NULL && xs2a_p11_is_uri(cert_s, cert_len))
    /* data-dependent (the certificate value names a token), so an error value, not a raise */
    return xs2a_pusherror(L, "identity", "a certificate from a token needs key = \"pkcs11:...\" as well", "config");
  if (hsm && ((pin_fn != 0) + (pin_s != NULL) + (pinenv_s != NULL)) > 1)
    return luaL_error(L, "identity: give one of pin and pin_env");
  pc.pass = pass_s;
  pc.len = pass_len;
  pc.asked = 0;

  id = (xs2a_identity *)lua_newuserdatauv(L, sizeof *id, 1);
  memset(id, 0, sizeof *id);          /* closed: safe to collect from here on */
  luaL_setmetatable(L, XS2A_IDENTITY);

  if (hsm) {
    if ((n = open_hsm(L, id, cert_s, cert_len, key_s, module_s, pin_fn, pin_s, pin_len, pinenv_s)) != 0) {
      identity_free(id);
      return n;
    }
    ERR_clear_error();
    return 1;
  }
  if (p12_s != NULL) {
    if ((n = input_get(L, p12_s, p12_len, "PKCS#12", &in)) != 0) return n;
    if (in.pem) {
      input_free(&in);
      return xs2a_pusherror(L, "identity", "p12 must be DER (PKCS#12), not PEM", "parse");
    }
    n = load_p12(L, &in, &pc, id);
    input_free(&in);
    if (n != 0) { identity_free(id); return n; }
  } else {
    if ((n = input_get(L, cert_s, cert_len, "certificate", &in)) != 0) return n;
    if (!load_certs(&in, &id->cert, &id->chain)) {
      input_free(&in);
      identity_free(id);
      return xs2a_pusherror(L, "identity", "certificate is not a valid PEM or DER certificate", "parse");
    }
    if (key_s == NULL) {          /* key in the same PEM as the certificate */
      if (!in.pem) {
        input_free(&in);
        identity_free(id);
        return luaL_error(L, "identity: option 'key' is missing");
      }
      n = load_key(L, &in, &pc, &id->key);
      input_free(&in);
    } else {
      input_free(&in);
      if ((n = input_get(L, key_s, key_len, "private key", &in)) != 0) {
        identity_free(id);
        return n;
      }
      n = load_key(L, &in, &pc, &id->key);
      input_free(&in);
    }
    if (n != 0) { identity_free(id); return n; }
  }
  if ((n = check_key_type(L, id->key)) != 0) { identity_free(id); return n; }
  if (EVP_PKEY_eq(X509_get0_pubkey(id->cert), id->key) != 1) {
    identity_free(id);
    return xs2a_pusherror(L, "identity", "private key does not match the certificate", "mismatch");
  }
  ERR_clear_error();
  return 1;
}

static int identity_close(lua_State *L) {   /* close, __close and __gc */
  xs2a_identity *id = (xs2a_identity *)luaL_checkudata(L, 1, XS2A_IDENTITY);
  identity_free(id);
  return 0;
}

/* ------------------------------------------------------------------ */
/* Certificate facts                                                   */

static void push_name(lua_State *L, X509_NAME *name) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p;
  long n;
  /* RFC 2253, but UTF-8 stays UTF-8 instead of \XX escapes */
  if (b == NULL || X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    BIO_free(b);
    ERR_clear_error();
    lua_pushliteral(L, "");
    return;
  }
  n = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p, n > 0 ? (size_t)n : 0);
  BIO_free(b);
}

/* pushes the UTF-8 value of the first entry obj in name, or nil */
static void push_name_entry(lua_State *L, X509_NAME *name, int nid, const char *oid) {
  ASN1_OBJECT *obj = nid != NID_undef ? OBJ_nid2obj(nid) : OBJ_txt2obj(oid, 1);
  int i = obj != NULL ? X509_NAME_get_index_by_OBJ(name, obj, -1) : -1;
  unsigned char *utf8 = NULL;
  int n;
  if (nid == NID_undef) ASN1_OBJECT_free(obj);
  if (i < 0) { ERR_clear_error(); lua_pushnil(L); return; }
  n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
  if (n < 0) { ERR_clear_error(); lua_pushnil(L); return; }
  lua_pushlstring(L, (const char *)utf8, (size_t)n);
  OPENSSL_free(utf8);
}

static void push_serial(lua_State *L, const ASN1_INTEGER *serial) {
  BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
  char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
  if (hex == NULL) {
    lua_pushnil(L);
  } else {
    const char *p = hex;
    int neg = (*p == '-');
    if (neg) p++;
    while (p[0] == '0' && p[1] != '\0') p++;
    lua_pushfstring(L, "%s%s", neg ? "-" : "", p);
  }
  OPENSSL_free(hex);
  BN_free(bn);
  ERR_clear_error();
}

/* days since 1970-01-01 of a civil date (proleptic Gregorian) */
static long long days_from_civil(long long y, unsigned m, unsigned d) {
  long long era;
  unsigned yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = (unsigned)(y - era * 400);
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (long long)doe - 719468;
}

static void push_time(lua_State *L, const ASN1_TIME *t) {
  struct tm tm;
  long long secs;
  memset(&tm, 0, sizeof tm);
  if (t == NULL || !ASN1_TIME_to_tm(t, &tm)) { ERR_clear_error(); lua_pushnil(L); return; }
  secs = days_from_civil((long long)tm.tm_year + 1900, (unsigned)tm.tm_mon + 1,
                         (unsigned)tm.tm_mday) * 86400LL +
         tm.tm_hour * 3600LL + tm.tm_min * 60LL + tm.tm_sec;
  lua_pushinteger(L, (lua_Integer)secs);
}

/* Strict DER walking with bounds checks: one identifier byte (universal or
 * context class, tag < 31), a definite length in its shortest form (long form
 * of at most 4 bytes), contents inside [*p, end). Sets the identifier byte and
 * the contents [*content, *content + *len); advances *p past the element. */
static int der_next(const unsigned char **p, const unsigned char *end, int *ident,
                    const unsigned char **content, long *len) {
  const unsigned char *q = *p;
  unsigned long l;
  int n;
  if (end - q < 2 || (q[0] & 0x1f) == 0x1f) return 0;
  *ident = q[0];
  l = q[1];
  q += 2;
  if (l & 0x80) {
    n = (int)(l & 0x7f);
    if (n == 0 || n > 4 || end - q < n || q[0] == 0) return 0;   /* indefinite, huge, padded */
    for (l = 0; n > 0; n--) l = (l << 8) | *q++;
    if (l < 0x80) return 0;                                      /* long form for a short length */
  }
  if (l > (unsigned long)(end - q)) return 0;
  *content = q;
  *len = (long)l;
  *p = q + l;
  return 1;
}

/* the next element, which must be the universal tag want_tag (constructed for
 * SEQUENCE/SET, primitive otherwise) */
static int der_get(const unsigned char **p, const unsigned char *end, int want_tag,
                   const unsigned char **content, long *len) {
  int ident, cons = want_tag == V_ASN1_SEQUENCE || want_tag == V_ASN1_SET;
  if (!der_next(p, end, &ident, content, len)) return 0;
  return ident == (want_tag | (cons ? V_ASN1_CONSTRUCTED : 0));
}

/* 0.4.0.19495.2 (id-etsi-psd2-qcStatement) and the role arc 0.4.0.19495.1 */
static const unsigned char OID_PSD2_STATEMENT[] = {0x04, 0x00, 0x81, 0x98, 0x27, 0x02};
static const unsigned char OID_PSD2_ROLE_ARC[] = {0x04, 0x00, 0x81, 0x98, 0x27, 0x01};
static const char *const ROLE_BY_OID[] = {NULL, "PSP_AS", "PSP_PI", "PSP_AI", "PSP_IC"};

static int is_text_tag(int tag) {
  return tag == V_ASN1_UTF8STRING || tag == V_ASN1_PRINTABLESTRING || tag == V_ASN1_IA5STRING;
}

static int der_text(const unsigned char **p, const unsigned char *end,
                    const unsigned char **s, long *len) {
  int ident;
  return der_next(p, end, &ident, s, len) && is_text_tag(ident);
}

/* The role a RoleOfPSP OID names: 1..4 for 0.4.0.19495.1.1 .. .4, else 0. */
static int role_of_oid(const unsigned char *oid, long len) {
  if (len != (long)sizeof OID_PSD2_ROLE_ARC + 1 ||
      memcmp(oid, OID_PSD2_ROLE_ARC, sizeof OID_PSD2_ROLE_ARC) != 0 ||
      oid[len - 1] < 1 || oid[len - 1] > 4)
    return 0;
  return oid[len - 1];
}

/* PSD2QcType ::= SEQUENCE { rolesOfPSP, nCAName, nCAId } in [p, end).
 * ETSI TS 119 495 defines a role by its OID; roleOfPspName is only a label, so
 * it is never read: a name that disagrees with its OID changes nothing.
 * Unknown OIDs are skipped, a repeated role counts once; order[] gets the
 * roles (1..4) in certificate order, 0-terminated. Returns 0 when the
 * structure is malformed (then the caller reports no roles at all). */
static int parse_psd2(const unsigned char *p, const unsigned char *end, int order[5],
                      const unsigned char **nca_name, long *nca_name_len,
                      const unsigned char **nca_id, long *nca_id_len) {
  const unsigned char *t, *t_end, *r, *r_end, *roid, *s;
  long tl, rl, roid_len, sl;
  int n = 0, k, role;
  if (!der_get(&p, end, V_ASN1_SEQUENCE, &t, &tl)) return 0;
  t_end = t + tl;
  if (!der_get(&t, t_end, V_ASN1_SEQUENCE, &r, &rl)) return 0;
  r_end = r + rl;
  while (r < r_end) {                              /* RoleOfPSP ::= SEQUENCE { oid, name } */
    const unsigned char *e, *e_end;
    long el;
    if (!der_get(&r, r_end, V_ASN1_SEQUENCE, &e, &el)) return 0;
    e_end = e + el;
    if (!der_get(&e, e_end, V_ASN1_OBJECT, &roid, &roid_len)) return 0;
    if (e < e_end && !der_text(&e, e_end, &s, &sl)) return 0;   /* a name, if any, is text */
    if (e != e_end) return 0;
    if ((role = role_of_oid(roid, roid_len)) == 0) continue;
    for (k = 0; k < n && order[k] != role; k++) {}
    if (k == n) order[n++] = role;               /* n <= 4: four distinct roles */
  }
  order[n] = 0;
  *nca_name = *nca_id = NULL;
  if (t < t_end) {
    if (!der_text(&t, t_end, nca_name, nca_name_len)) return 0;
    if (t < t_end && !der_text(&t, t_end, nca_id, nca_id_len)) return 0;
  }
  return 1;
}

/* Sets info.roles (list in certificate order, maybe empty), info.nca_name,
 * info.nca_id from the PSD2 QCStatement. Malformed data yields no roles and
 * no NCA. Table at top. */
static void push_psd2(lua_State *L, X509 *cert) {
  ASN1_OBJECT *qcs = OBJ_txt2obj("1.3.6.1.5.5.7.1.3", 1);
  int idx = qcs != NULL ? X509_get_ext_by_OBJ(cert, qcs, -1) : -1;
  const unsigned char *p, *end, *c, *nca_name = NULL, *nca_id = NULL;
  long len, nca_name_len = 0, nca_id_len = 0;
  int order[5] = {0, 0, 0, 0, 0}, found = 0, i;
  ASN1_OBJECT_free(qcs);
  ERR_clear_error();
  if (idx >= 0 && X509_get_ext_by_OBJ(cert, X509_EXTENSION_get_object(X509_get_ext(cert, idx)), idx) < 0) {
    ASN1_OCTET_STRING *os = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
    p = ASN1_STRING_get0_data(os);
    end = p + ASN1_STRING_length(os);
    if (der_get(&p, end, V_ASN1_SEQUENCE, &c, &len) && p == end) {
      p = c;
      end = c + len;
      while (p < end) {                            /* each QCStatement */
        const unsigned char *oid, *q, *stmt_end;
        long oid_len;
        if (!der_get(&p, end, V_ASN1_SEQUENCE, &c, &len)) { found = 0; break; }
        q = c;
        stmt_end = c + len;
        if (!der_get(&q, stmt_end, V_ASN1_OBJECT, &oid, &oid_len)) { found = 0; break; }
        if (oid_len != (long)sizeof OID_PSD2_STATEMENT ||
            memcmp(oid, OID_PSD2_STATEMENT, sizeof OID_PSD2_STATEMENT) != 0)
          continue;
        if (found ||                               /* a second PSD2 statement: ambiguous */
            !parse_psd2(q, stmt_end, order, &nca_name, &nca_name_len, &nca_id, &nca_id_len)) {
          found = 0;
          break;
        }
        found = 1;
      }
    }
  }
  lua_newtable(L);                                 /* info, roles */
  if (found) {
    for (i = 0; order[i] != 0; i++) {
      lua_pushstring(L, ROLE_BY_OID[order[i]]);
      lua_rawseti(L, -2, i + 1);
    }
    if (nca_name != NULL) {
      lua_pushlstring(L, (const char *)nca_name, (size_t)nca_name_len);
      lua_setfield(L, -3, "nca_name");
    }
    if (nca_id != NULL) {
      lua_pushlstring(L, (const char *)nca_id, (size_t)nca_id_len);
      lua_setfield(L, -3, "nca_id");
    }
  }
  lua_setfield(L, -2, "roles");                    /* info */
}

static void push_key_facts(lua_State *L, const EVP_PKEY *key) {
  int id = key != NULL ? EVP_PKEY_base_id(key) : NID_undef;
  if (id == EVP_PKEY_RSA) lua_pushliteral(L, "RSA");
  else if (id == EVP_PKEY_EC) lua_pushliteral(L, "EC");
  else if (id != NID_undef && OBJ_nid2sn(id) != NULL) lua_pushstring(L, OBJ_nid2sn(id));
  else lua_pushnil(L);
  lua_setfield(L, -2, "key_type");
  if (key != NULL) {
    lua_pushinteger(L, EVP_PKEY_bits(key));
    lua_setfield(L, -2, "key_bits");
  }
}

void xs2a_pushcertinfo(lua_State *L, X509 *cert) {
  static const char hexd[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  char hex[2 * EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0, i;
  X509_NAME *subject = X509_get_subject_name(cert);
  lua_createtable(L, 0, 16);                       /* info */
  push_name(L, subject);
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(cert));
  lua_setfield(L, -2, "issuer");
  push_name_entry(L, subject, NID_commonName, NULL);
  lua_setfield(L, -2, "common_name");
  push_name_entry(L, subject, NID_undef, "2.5.4.97");
  lua_setfield(L, -2, "organization_identifier");
  push_serial(L, X509_get0_serialNumber(cert));
  lua_setfield(L, -2, "serial");
  push_time(L, X509_get0_notBefore(cert));
  lua_setfield(L, -2, "not_before");
  push_time(L, X509_get0_notAfter(cert));
  lua_setfield(L, -2, "not_after");
  lua_pushboolean(L, X509_cmp_current_time(X509_get0_notAfter(cert)) < 0);
  lua_setfield(L, -2, "expired");
  push_psd2(L, cert);
  push_key_facts(L, X509_get0_pubkey(cert));
  if (X509_digest(cert, EVP_sha256(), md, &mdlen)) {
    for (i = 0; i < mdlen; i++) {
      hex[2 * i] = hexd[md[i] >> 4];
      hex[2 * i + 1] = hexd[md[i] & 15];
    }
    lua_pushlstring(L, hex, 2 * (size_t)mdlen);
    lua_setfield(L, -2, "fingerprint");
  }
  ERR_clear_error();
}

static int identity_info(lua_State *L) {
  xs2a_identity *id = xs2a_checkidentity(L, 1);
  xs2a_pushcertinfo(L, id->cert);
  push_key_facts(L, id->key);
  if (id->p11 != NULL) {
    lua_pushliteral(L, "pkcs11");
    lua_setfield(L, -2, "key_store");
    if (xs2a_p11_token(id->p11) != NULL) {
      lua_pushstring(L, xs2a_p11_token(id->p11));
      lua_setfield(L, -2, "token");
    }
  }
  return 1;
}

static void push_der(lua_State *L, X509 *x) {
  unsigned char *der = NULL;
  int n = i2d_X509(x, &der);
  if (n < 0) { ERR_clear_error(); luaL_error(L, "identity: cannot encode the certificate"); }
  lua_pushlstring(L, (const char *)der, (size_t)n);
  OPENSSL_free(der);
}

static int identity_cert_der(lua_State *L) {
  push_der(L, xs2a_checkidentity(L, 1)->cert);
  return 1;
}

static int identity_cert_pem(lua_State *L) {
  xs2a_identity *id = xs2a_checkidentity(L, 1);
  BIO *b = BIO_new(BIO_s_mem());
  char *p;
  long n;
  if (b == NULL || !PEM_write_bio_X509(b, id->cert)) {
    BIO_free(b);
    return xs2a_pushsslerror(L, "identity.cert_pem");
  }
  n = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p, n > 0 ? (size_t)n : 0);
  BIO_free(b);
  return 1;
}

static int identity_chain_der(lua_State *L) {
  xs2a_identity *id = xs2a_checkidentity(L, 1);
  int i, n = id->chain != NULL ? sk_X509_num(id->chain) : 0;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    push_der(L, sk_X509_value(id->chain, i));
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

size_t xs2a_ec_halfsize(const EVP_PKEY *key) {
  if (key == NULL || EVP_PKEY_base_id(key) != EVP_PKEY_EC) return 0;
  return ((size_t)EVP_PKEY_bits(key) + 7) / 8;
}

/* the digest of a slot, fetched once per identity (not per process: the
 * core may be unloaded with its Lua state, and a static cache would leak) */
static const EVP_MD *fetched_md(xs2a_identity *id, int slot) {
  static const char *const names[3] = {"SHA2-256", "SHA2-384", "SHA2-512"};
  if (id->md[slot] == NULL) id->md[slot] = EVP_MD_fetch(NULL, names[slot], NULL);
  return id->md[slot];
}

static int md_slot(const EVP_MD *md) {
  switch (EVP_MD_get_type(md)) {
    case NID_sha256: return 0;
    case NID_sha384: return 1;
    case NID_sha512: return 2;
    default: return -1;
  }
}

/* the reusable signing context for (md, pss); NULL on failure (error queued) */
static EVP_PKEY_CTX *sign_ctx(xs2a_identity *id, int slot, int pss, int is_ec) {
  EVP_PKEY_CTX *c;
  int i = slot * 2 + pss;
  if (id->sctx[i] != NULL) return id->sctx[i];
  if ((c = EVP_PKEY_CTX_new(id->key, NULL)) == NULL) return NULL;
  if (EVP_PKEY_sign_init(c) <= 0 || EVP_PKEY_CTX_set_signature_md(c, fetched_md(id, slot)) <= 0 ||
      (!is_ec && EVP_PKEY_CTX_set_rsa_padding(c, pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) <= 0) ||
      (pss && EVP_PKEY_CTX_set_rsa_pss_saltlen(c, RSA_PSS_SALTLEN_DIGEST) <= 0)) {
    EVP_PKEY_CTX_free(c);
    return NULL;
  }
  return id->sctx[i] = c;
}

#define SIG_MAX 1024       /* RSA up to 8192 bits; ECDSA DER is far smaller */

/* the facts of the identity's (open) key that signing asks for, looked up
 * once per key */
static void key_facts(xs2a_identity *id) {
  if (id->typed == id->key) return;
  id->is_ec = EVP_PKEY_base_id(id->key) == EVP_PKEY_EC;
  id->too_big = EVP_PKEY_get_size(id->key) > SIG_MAX;
  id->typed = id->key;
}

static int key_is_ec(xs2a_identity *id) {
  key_facts(id);
  return id->is_ec;
}

/* Signs a hash made with the digest of slot into sig (size *siglen in,
 * length out). 1 on success; 0 with the OpenSSL error queued. */
static int sign_hash(xs2a_identity *id, int slot, int pss, const unsigned char *h, size_t hlen,
                     unsigned char *sig, size_t *siglen) {
  EVP_PKEY_CTX *c = sign_ctx(id, slot, pss, key_is_ec(id));
  return c != NULL && EVP_PKEY_sign(c, sig, siglen, h, hlen) > 0;
}

/* Signs data with the identity's key into sig (size *siglen in, length out).
 * 1 on success; 0 with the OpenSSL error queued. Shared with the HSM code. */
int xs2a_identity_sign_raw(xs2a_identity *id, const xs2a_sigopts *o,
                           const unsigned char *data, size_t len,
                           unsigned char *sig, size_t *siglen) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  int slot = md_slot((const EVP_MD *)o->md);
  if (slot < 0 || fetched_md(id, slot) == NULL) return 0;
  if (!EVP_Digest(data, len, md, &mdlen, fetched_md(id, slot), NULL)) return 0;
  return sign_hash(id, slot, o->pss, md, mdlen, sig, siglen);
}

/* For a token key: refuses use in a process other than the one that opened
 * the session (after fork). 0 ok, else nil, err, code pushed -> 3. */
static int check_process(lua_State *L, xs2a_identity *id, const char *op) {
  if (!xs2a_p11_other_process(id->p11)) return 0;
  return xs2a_pusherror(L, op, "this HSM identity was opened in another process; a PKCS#11 session "
                        "does not cross fork(): open it in each process (in nginx: init_worker_by_lua)",
                        "config");
}

/* After a failed token signature: open the key again, once. 0 ok; else
 * pushes nil, err, "io" and returns 3. */
static int reopen_key(lua_State *L, xs2a_identity *id) {
  int pin_fn = 0, n;
  ERR_clear_error();
  xs2a_identity_drop_key(id);
  if (xs2a_getuservalue(L, 1, 1) == LUA_TFUNCTION) pin_fn = lua_gettop(L);
  n = xs2a_p11_reopen(L, id->p11, pin_fn, &id->key);
  if (n != 0) {
    const char *why = lua_tostring(L, -2);
    lua_pushfstring(L, "identity.sign: the PKCS#11 token failed to sign and opening the key again failed (%s); "
                    "libp11 keeps the lost sessions for the rest of this process: restart it (in nginx: "
                    "nginx -s reload starts new workers)",
                    why != NULL ? why : "?");
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushliteral(L, "io");
    return 3;
  }
  lua_pop(L, 1);                     /* the user value */
  return 0;
}

/* Before a signature by the identity at stack index 1: a token key must be
 * used in its own process and is opened again when it was lost. 0 ok;
 * else the error values are pushed and their count returned. */
static int sign_ready(lua_State *L, xs2a_identity *id) {
  int n;
  if ((n = check_process(L, id, "identity.sign")) != 0) return n;
  if (id->key == NULL && (n = reopen_key(L, id)) != 0) return n;   /* lost before */
  if (ERR_peek_error() != 0) ERR_clear_error();   /* (peeking is the cheaper) */
  key_facts(id);
  if (id->too_big) return xs2a_pusherror(L, "identity.sign", "key too large", "unsupported");
  return 0;
}

/* Signs the hash h (made with the digest of slot) into sig[SIG_MAX]; a
 * token that fails is opened again and asked once more. 0 ok; else the
 * error values are pushed and their count returned. */
static int sign_hash_checked(lua_State *L, xs2a_identity *id, int slot, int pss,
                             const unsigned char *h, size_t hlen, unsigned char *sig, size_t *siglen) {
  int n;
  *siglen = SIG_MAX;
  if (sign_hash(id, slot, pss, h, hlen, sig, siglen)) return 0;
  if (id->p11 == NULL) return xs2a_pushsslerror(L, "identity.sign");
  if ((n = reopen_key(L, id)) != 0) return n;       /* the token: re-open once */
  *siglen = SIG_MAX;
  if (sign_hash(id, slot, pss, h, hlen, sig, siglen)) return 0;
  ERR_clear_error();
  return xs2a_pusherror(L, "identity.sign", "the PKCS#11 token failed to sign, also after opening "
                        "the session again", "io");
}

/* identity:sign(data, {hash=, padding=, ec_format=}) -> signature bytes | nil, err */
static int identity_sign(lua_State *L) {
  xs2a_identity *id = xs2a_checkidentity(L, 1);
  size_t len, siglen;
  const char *data = luaL_checklstring(L, 2, &len);
  int is_ec, n, slot;
  xs2a_sigopts o;
  unsigned char sig[SIG_MAX], h[EVP_MAX_MD_SIZE];
  unsigned int hlen = 0;
  xs2a_checksigopts(L, 3, &o);
  if ((n = sign_ready(L, id)) != 0) return n;
  is_ec = key_is_ec(id);
  if (o.pss && is_ec) return luaL_argerror(L, 3, "padding 'pss' needs an RSA key");
  slot = md_slot((const EVP_MD *)o.md);
  if (slot < 0 || fetched_md(id, slot) == NULL ||
      !EVP_Digest(data, len, h, &hlen, fetched_md(id, slot), NULL))
    return xs2a_pushsslerror(L, "identity.sign");
  if ((n = sign_hash_checked(L, id, slot, o.pss, h, hlen, sig, &siglen)) != 0) return n;
  if (is_ec && o.ec_raw) {
    size_t half = xs2a_ec_halfsize(id->key);
    unsigned char raw[2 * 66];
    if (half == 0 || half > 66 || !xs2a_ec_der2raw(sig, siglen, half, raw))
      return xs2a_pushsslerror(L, "identity.sign");
    lua_pushlstring(L, (const char *)raw, 2 * half);
  } else {
    lua_pushlstring(L, (const char *)sig, siglen);
  }
  return 1;
}

/* ------------------------------------------------------------------ */
/* The Berlin Group signature in one call (xs2a.sign.berlin's common case) */

/* the header names the Berlin signature reads (the first four, in signing
 * order after digest) or replaces (the last three), lowercase */
enum { BG_XRID, BG_PSU_ID, BG_PSU_CORP, BG_REDIRECT, BG_DIGEST, BG_SIGNATURE, BG_CERT, BG_N };
static const struct { const char *name; size_t len; } BG_NAMES[BG_N] = {
  {"x-request-id", 12}, {"psu-id", 6}, {"psu-corporate-id", 16}, {"tpp-redirect-uri", 16},
  {"digest", 6}, {"signature", 9}, {"tpp-signature-certificate", 25}
};
static const char *const BG_SET[3] = {"Digest", "Signature", "TPP-Signature-Certificate"};

/* the BG_ index of header name k (any case), or -1 */
static int bg_name(const char *k, size_t len) {
  int i;
  size_t j;
  for (i = 0; i < BG_N; i++) {
    const char *want = BG_NAMES[i].name;
    if (len != BG_NAMES[i].len) continue;
    for (j = 0; j < len; j++) {
      unsigned char c = (unsigned char)k[j];
      if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + ('a' - 'A'));
      if (c != (unsigned char)want[j]) break;
    }
    if (j == len) return i;
  }
  return -1;
}

/* The signing string is hashed as it is made, through a buffer: a few
 * digest updates instead of one per piece. */
typedef struct {
  EVP_MD_CTX *ctx;
  size_t n;
  int ok;
  char buf[512];
} sigstring;

/* appends p[0..len); (NULL, 0) hashes what is buffered and wipes the
 * buffer (header values such as PSU-ID are personal data). 0 after a failure */
static int ss_add(sigstring *s, const char *p, size_t len) {
  if (p == NULL || s->n + len > sizeof s->buf) {
    s->ok = s->ok && (s->n == 0 || EVP_DigestUpdate(s->ctx, s->buf, s->n));
    OPENSSL_cleanse(s->buf, s->n);
    s->n = 0;
  }
  if (p == NULL || !s->ok) return s->ok;
  if (len > sizeof s->buf) return s->ok = EVP_DigestUpdate(s->ctx, p, len);
  memcpy(s->buf + s->n, p, len);
  s->n += len;
  return 1;
}

#define BG_SHA512_DIGEST 1   /* Digest: SHA-512 (else SHA-256) */
#define BG_SHA512_HASH 2     /* signature hash sha512 (else sha256) */
#define BG_PSS 4             /* RSA-PSS (else PKCS#1 v1.5; EC: DER) */

/* identity:_sign_berlin(headers, body, flags, prefix, certificate)
 * -> true | false | nil, err, code
 * Signs a request's headers in place with the fixed Berlin Group header list
 * (digest, x-request-id, then psu-id, psu-corporate-id, tpp-redirect-uri when
 * present): sets Digest, Signature (prefix .. names .. '",signature="' ..
 * base64 .. '"') and TPP-Signature-Certificate (certificate), replacing any
 * other spelling of them. false, and nothing changed, when the header table
 * is one the general Lua path must handle (a metatable, a name of the list
 * in two spellings, a value of the list that is not a string, no
 * X-Request-ID). Internal: for xs2a.sign.berlin only. */
static int identity_sign_berlin(lua_State *L) {
  xs2a_identity *id = xs2a_checkidentity(L, 1);
  size_t blen = 0, plen, clen, vlen[4] = {0, 0, 0, 0}, klen[BG_N], dvlen, siglen, b64len, i;
  const char *body = "", *prefix, *val[4] = {NULL, NULL, NULL, NULL}, *key[BG_N];
  lua_Integer flags;
  int n, hslot, pss;
  unsigned char h[EVP_MAX_MD_SIZE], sig[SIG_MAX];
  char dv[8 + 88], b64[(SIG_MAX + 2) / 3 * 4];
  unsigned int hlen = 0;
  EVP_MD_CTX *c;
  sigstring ss;
  luaL_Buffer b;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) body = luaL_checklstring(L, 3, &blen);
  flags = luaL_checkinteger(L, 4);
  luaL_argcheck(L, flags >= 0 && flags <= 7, 4, "flags must be 0..7");
  prefix = luaL_checklstring(L, 5, &plen);
  luaL_checklstring(L, 6, &clen);
  lua_settop(L, 6);
  hslot = (flags & BG_SHA512_HASH) ? 2 : 0;
  pss = (flags & BG_PSS) != 0;
  for (i = 0; i < BG_N; i++) { key[i] = NULL; klen[i] = 0; }
  if (lua_getmetatable(L, 2)) { lua_pushboolean(L, 0); return 1; }
  lua_pushnil(L);
  while (lua_next(L, 2) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      size_t kl;
      const char *k = lua_tolstring(L, -2, &kl);
      int w = bg_name(k, kl);
      if (w >= 0 && (key[w] != NULL || (w < 4 && lua_type(L, -1) != LUA_TSTRING))) {
        lua_pushboolean(L, 0);       /* two spellings, or a value to convert */
        return 1;
      }
      if (w >= 0) {
        key[w] = k;                  /* kept alive by the table until replaced */
        klen[w] = kl;
        if (w < 4) val[w] = lua_tolstring(L, -1, &vlen[w]);
      }
    }
    lua_pop(L, 1);
  }
  if (val[BG_XRID] == NULL) { lua_pushboolean(L, 0); return 1; }
  if ((n = sign_ready(L, id)) != 0) return n;
  if (pss && key_is_ec(id)) return luaL_argerror(L, 4, "PSS needs an RSA key");
  if (id->dctx == NULL && (id->dctx = EVP_MD_CTX_new()) == NULL) return xs2a_pushsslerror(L, "identity.sign");
  c = id->dctx;
  /* Digest: the body's digest, then the signing string hashed as it is
   * made (it holds public header values only) */
  memcpy(dv, (flags & BG_SHA512_DIGEST) ? "SHA-512=" : "SHA-256=", 8);
  if (fetched_md(id, (flags & BG_SHA512_DIGEST) ? 2 : 0) == NULL || fetched_md(id, hslot) == NULL ||
      !EVP_DigestInit_ex2(c, fetched_md(id, (flags & BG_SHA512_DIGEST) ? 2 : 0), NULL) ||
      !EVP_DigestUpdate(c, body, blen) || !EVP_DigestFinal_ex(c, h, &hlen))
    return xs2a_pushsslerror(L, "identity.sign");
  dvlen = 8 + xs2a_b64encode(h, hlen, dv + 8);
  if (!EVP_DigestInit_ex2(c, fetched_md(id, hslot), NULL)) return xs2a_pushsslerror(L, "identity.sign");
  ss.ctx = c;
  ss.n = 0;
  ss.ok = 1;
  ss_add(&ss, "digest: ", 8);
  ss_add(&ss, dv, dvlen);
  ss_add(&ss, "\nx-request-id: ", 15);
  ss_add(&ss, val[BG_XRID], vlen[BG_XRID]);
  for (i = BG_PSU_ID; i <= BG_REDIRECT; i++)
    if (val[i] != NULL) {
      ss_add(&ss, "\n", 1);
      ss_add(&ss, BG_NAMES[i].name, BG_NAMES[i].len);
      ss_add(&ss, ": ", 2);
      ss_add(&ss, val[i], vlen[i]);
    }
  if (!ss_add(&ss, NULL, 0)) return xs2a_pushsslerror(L, "identity.sign");
  if (!EVP_DigestFinal_ex(c, h, &hlen)) return xs2a_pushsslerror(L, "identity.sign");
  /* the header values, set as the Lua path sets them: Digest before the
   * signature is made, the other two after */
  for (i = 0; i < 3; i++) {
    int w = BG_DIGEST + (int)i;
    if (key[w] != NULL && (klen[w] != strlen(BG_SET[i]) || memcmp(key[w], BG_SET[i], klen[w]) != 0)) {
      lua_pushlstring(L, key[w], klen[w]);
      lua_pushnil(L);
      lua_rawset(L, 2);              /* another spelling goes */
    }
  }
  lua_pushvalue(L, lua_upvalueindex(1));             /* "Digest" */
  lua_pushlstring(L, dv, dvlen);
  lua_rawset(L, 2);
  if ((n = sign_hash_checked(L, id, hslot, pss, h, hlen, sig, &siglen)) != 0) return n;
  b64len = xs2a_b64encode(sig, siglen, b64);
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, prefix, plen);
  luaL_addstring(&b, "digest x-request-id");
  for (i = BG_PSU_ID; i <= BG_REDIRECT; i++)
    if (val[i] != NULL) {
      luaL_addchar(&b, ' ');
      luaL_addlstring(&b, BG_NAMES[i].name, BG_NAMES[i].len);
    }
  luaL_addstring(&b, "\",signature=\"");
  luaL_addlstring(&b, b64, b64len);
  luaL_addchar(&b, '"');
  luaL_pushresult(&b);
  lua_pushvalue(L, lua_upvalueindex(2));             /* "Signature" */
  lua_insert(L, -2);
  lua_rawset(L, 2);
  lua_pushvalue(L, lua_upvalueindex(3));             /* "TPP-Signature-Certificate" */
  lua_pushvalue(L, 6);
  lua_rawset(L, 2);
  lua_pushboolean(L, 1);
  return 1;
}

/* identity:_pkey_handle() -> lightuserdata EVP_PKEY* with its own reference.
 * Internal, for the ngx transport only: it wraps the pointer with LuaJIT's
 * ffi (ffi.gc(ffi.cast("void *", h), EVP_PKEY_free)) and hands it to
 * tcpsock:setclientcert as the pkey cdata. The key never leaves OpenSSL as
 * bytes; the caller owns one reference and must release it exactly once. */
static int identity_pkey_handle(lua_State *L) {
  xs2a_identity *id = xs2a_checkidentity(L, 1);
  int n;
  if ((n = check_process(L, id, "identity._pkey_handle")) != 0) return n;
  if (id->key == NULL)
    return xs2a_pusherror(L, "identity._pkey_handle", "the PKCS#11 session was lost", "io");
  if (EVP_PKEY_up_ref(id->key) != 1) return xs2a_pushsslerror(L, "identity._pkey_handle");
  lua_pushlightuserdata(L, id->key);
  return 1;
}

static int identity__tostring(lua_State *L) {
  xs2a_identity *id = (xs2a_identity *)luaL_checkudata(L, 1, XS2A_IDENTITY);
  int kid;
  if (id->cert == NULL) {
    lua_pushliteral(L, "xs2a.Identity (closed)");
    return 1;
  }
  push_name_entry(L, X509_get_subject_name(id->cert), NID_commonName, NULL);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    push_name(L, X509_get_subject_name(id->cert));
  } else {
    lua_pushfstring(L, "CN=%s", lua_tostring(L, -1));
    lua_remove(L, -2);
  }
  kid = id->key != NULL ? EVP_PKEY_base_id(id->key) : NID_undef;
  lua_pushfstring(L, "xs2a.Identity (%s, %s %d%s)", lua_tostring(L, -1),
                  kid == EVP_PKEY_RSA ? "RSA" : kid == EVP_PKEY_EC ? "EC" : "?",
                  id->key != NULL ? EVP_PKEY_bits(id->key) : 0, id->p11 != NULL ? ", pkcs11" : "");
  return 1;
}

/* core.cert_info(pem_or_der) -> info | nil, err */
static int core_cert_info(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  X509 *x = xs2a_parsecert(s, len);
  if (x == NULL)
    return xs2a_pusherror(L, "cert_info", "not a PEM or DER certificate", "parse");
  xs2a_pushcertinfo(L, x);
  X509_free(x);
  return 1;
}

static const luaL_Reg identity_methods[] = {
  {"info", identity_info},
  {"cert_der", identity_cert_der},
  {"cert_pem", identity_cert_pem},
  {"chain_der", identity_chain_der},
  {"sign", identity_sign},
  {"_pkey_handle", identity_pkey_handle},
  {"close", identity_close},
  {NULL, NULL}
};

static const luaL_Reg identity_meta[] = {
  {"__gc", identity_close},
  {"__close", identity_close},
  {"__tostring", identity__tostring},
  {NULL, NULL}
};

/* For core.http_session's cert_file/key_file: the identity in those files,
 * loaded as core.identity{cert =, key =} would (pushes it, or nil, message,
 * code), so that libcurl is never handed the paths (it would have OpenSSL
 * read the key file again for every connection, through a stdio buffer
 * that goes back to the heap unwiped). */
int xs2a_identity_from_files(lua_State *L, const char *cert, const char *key) {
  lua_pushcfunction(L, identity_new);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, cert);
  lua_setfield(L, -2, "cert");
  lua_pushstring(L, key);
  lua_setfield(L, -2, "key");
  lua_call(L, 1, 3);
  return 3;
}

static const luaL_Reg identity_funcs[] = {
  {"identity", identity_new},
  {"cert_info", core_cert_info},
  {NULL, NULL}
};

void xs2a_identity_open(lua_State *L) {
  int i;
  xs2a_newclass(L, XS2A_IDENTITY, identity_methods, identity_meta);
  luaL_setfuncs(L, identity_funcs, 0);
  /* _sign_berlin keeps the names of the headers it sets as upvalues: made
   * once, not looked up in the string table on every signature */
  luaL_getmetatable(L, XS2A_IDENTITY);
  lua_getfield(L, -1, "__index");                  /* core, mt, methods */
  for (i = 0; i < 3; i++) lua_pushstring(L, BG_SET[i]);
  lua_pushcclosure(L, identity_sign_berlin, 3);
  lua_setfield(L, -2, "_sign_berlin");
  lua_pop(L, 2);
}
