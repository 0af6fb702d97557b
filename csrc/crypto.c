/* crypto.c: digests, HMAC, signature checks, randomness and encodings. */
#include <ctype.h>
#include <unistd.h>
#include <string.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "core.h"

#define MAX_RANDOM (1024 * 1024)

/* A work buffer owned by the Lua GC (luaL_buffinitsize on LuaJIT only gives
 * LUAL_BUFFERSIZE bytes, so we do not use it for sized output). */
static unsigned char *scratch(lua_State *L, size_t n) {
  return (unsigned char *)lua_newuserdata(L, n ? n : 1);
}

/* pushes out[0..n) as a string, wipes and drops the scratch below it */
static void push_scratch(lua_State *L, unsigned char *out, size_t n, size_t size) {
  lua_pushlstring(L, (const char *)out, n);
  OPENSSL_cleanse(out, size ? size : 1);
  lua_remove(L, -2);
}

/* "sha256", "SHA-256", "sha-256" ... -> EVP_MD; sha1 only where allow_sha1 */
static const EVP_MD *md_byname(const char *name, int allow_sha1) {
  char norm[16];
  size_t i, j = 0;
  for (i = 0; name[i] != '\0' && j < sizeof norm - 1; i++)
    if (name[i] != '-') norm[j++] = (char)tolower((unsigned char)name[i]);
  norm[j] = '\0';
  if (name[i] != '\0') return NULL;
  if (strcmp(norm, "sha256") == 0) return EVP_sha256();
  if (strcmp(norm, "sha384") == 0) return EVP_sha384();
  if (strcmp(norm, "sha512") == 0) return EVP_sha512();
  if (allow_sha1 && strcmp(norm, "sha1") == 0) return EVP_sha1();
  return NULL;
}

/* The digests of core.digest and core.hmac, fetched from the provider once
 * per Lua state (EVP_sha256() and friends are fetched again on every use).
 * The cache is the upvalue of both functions; its __gc frees it. */
typedef struct { EVP_MD *md[4]; } mdcache;   /* sha1, sha256, sha384, sha512 */

static int mdcache_gc(lua_State *L) {
  mdcache *c = (mdcache *)lua_touserdata(L, 1);
  int i;
  for (i = 0; i < 4; i++) {
    EVP_MD_free(c->md[i]);
    c->md[i] = NULL;
  }
  return 0;
}

static const EVP_MD *check_md(lua_State *L, int idx, int allow_sha1) {
  const char *name = luaL_checkstring(L, idx);
  const EVP_MD *md = md_byname(name, allow_sha1);
  mdcache *c = (mdcache *)lua_touserdata(L, lua_upvalueindex(1));
  int slot;
  if (md == NULL) luaL_argerror(L, idx, lua_pushfstring(L, "unknown digest '%s'", name));
  switch (EVP_MD_get_type(md)) {
    case NID_sha1: slot = 0; break;
    case NID_sha256: slot = 1; break;
    case NID_sha384: slot = 2; break;
    default: slot = 3; break;
  }
  if (c == NULL) return md;
  if (c->md[slot] == NULL) c->md[slot] = EVP_MD_fetch(NULL, EVP_MD_get0_name(md), NULL);
  ERR_clear_error();
  return c->md[slot] != NULL ? c->md[slot] : md;
}

void xs2a_checksigopts(lua_State *L, int idx, xs2a_sigopts *o) {
  o->md = EVP_sha256();
  o->pss = 0;
  o->ec_raw = 0;
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "hash");
  if (!lua_isnil(L, -1)) {
    const char *name = lua_tostring(L, -1);
    if (lua_type(L, -1) != LUA_TSTRING || (o->md = md_byname(name, 0)) == NULL)
      luaL_argerror(L, idx, "hash must be 'sha256', 'sha384' or 'sha512'");
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "padding");
  if (!lua_isnil(L, -1)) {
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(s, "pss") == 0) o->pss = 1;
    else if (strcmp(s, "pkcs1") != 0) luaL_argerror(L, idx, "padding must be 'pkcs1' or 'pss'");
  }
  lua_pop(L, 1);
  lua_getfield(L, idx, "ec_format");
  if (!lua_isnil(L, -1)) {
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(s, "raw") == 0) o->ec_raw = 1;
    else if (strcmp(s, "der") != 0) luaL_argerror(L, idx, "ec_format must be 'der' or 'raw'");
  }
  lua_pop(L, 1);
}

int xs2a_ec_der2raw(const unsigned char *der, size_t der_len, size_t nlen,
                    unsigned char *raw) {
  const unsigned char *p = der;
  ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
  const BIGNUM *r, *s;
  int ok;
  if (sig == NULL) return 0;
  ECDSA_SIG_get0(sig, &r, &s);
  ok = BN_bn2binpad(r, raw, (int)nlen) == (int)nlen &&
       BN_bn2binpad(s, raw + nlen, (int)nlen) == (int)nlen;
  ECDSA_SIG_free(sig);
  return ok;
}

int xs2a_ec_raw2der(const unsigned char *raw, size_t raw_len,
                    unsigned char **der, size_t *der_len) {
  ECDSA_SIG *sig;
  BIGNUM *r, *s;
  int n;
  *der = NULL;
  if (raw_len == 0 || raw_len % 2 != 0 || raw_len > 2 * 66) return 0;
  r = BN_bin2bn(raw, (int)(raw_len / 2), NULL);
  s = BN_bin2bn(raw + raw_len / 2, (int)(raw_len / 2), NULL);
  sig = ECDSA_SIG_new();
  if (r == NULL || s == NULL || sig == NULL || !ECDSA_SIG_set0(sig, r, s)) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return 0;
  }
  n = i2d_ECDSA_SIG(sig, der);
  ECDSA_SIG_free(sig);
  if (n <= 0) return 0;
  *der_len = (size_t)n;
  return 1;
}

/* core.digest(alg, data) -> raw bytes */
static int core_digest(lua_State *L) {
  const EVP_MD *md = check_md(L, 1, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(data, len, out, &n, md, NULL)) return xs2a_pushsslerror(L, "digest");
  lua_pushlstring(L, (const char *)out, n);
  return 1;
}

/* core.hmac(alg, key, data) -> raw bytes */
static int core_hmac(lua_State *L) {
  const EVP_MD *md = check_md(L, 1, 1);
  size_t klen, len;
  const char *key = luaL_checklstring(L, 2, &klen);
  const char *data = luaL_checklstring(L, 3, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (klen > INT_MAX) return luaL_argerror(L, 2, "key too long");
  if (HMAC(md, key, (int)klen, (const unsigned char *)data, len, out, &n) == NULL)
    return xs2a_pushsslerror(L, "hmac");
  lua_pushlstring(L, (const char *)out, n);
  OPENSSL_cleanse(out, sizeof out);
  return 1;
}

/* the public key of a certificate (PEM/DER), a PUBLIC KEY PEM/DER or an Identity */
/* true | false, "op: why" (why == NULL means yes) */
static int push_verdict(lua_State *L, const char *op, const char *why) {
  if (why == NULL) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushfstring(L, "%s: %s", op, why);
  return 2;
}

static EVP_PKEY *load_pubkey(lua_State *L, int idx) {
  EVP_PKEY *pk = NULL;
  size_t len;
  const char *s;
  X509 *x;
  if (lua_type(L, idx) == LUA_TUSERDATA) {
    xs2a_identity *id = xs2a_checkidentity(L, idx);
    pk = X509_get_pubkey(xs2a_identity_cert(id));
    ERR_clear_error();
    return pk;
  }
  s = luaL_checklstring(L, idx, &len);
  if ((x = xs2a_parsecert(s, len)) != NULL) {
    pk = X509_get_pubkey(x);
    X509_free(x);
  } else if (len <= INT_MAX && strstr(s, "-----BEGIN PUBLIC KEY") != NULL) {
    BIO *b = BIO_new_mem_buf(s, (int)len);
    if (b != NULL) pk = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    BIO_free(b);
  } else {
    const unsigned char *p = (const unsigned char *)s;
    pk = d2i_PUBKEY(NULL, &p, (long)len);
  }
  ERR_clear_error();
  return pk;
}

/* core.verify(cert, data, sig, opts) -> true | false, reason */
static int core_verify(lua_State *L) {
  size_t len, siglen, derlen = 0;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *sig = luaL_checklstring(L, 3, &siglen);
  EVP_PKEY *pk;
  EVP_MD_CTX *ctx = NULL;
  EVP_PKEY_CTX *pctx = NULL;
  unsigned char *der = NULL;
  const unsigned char *check = (const unsigned char *)sig;
  xs2a_sigopts o;
  int is_ec, r = -1;
  const char *why = NULL;
  if (lua_type(L, 1) != LUA_TUSERDATA) luaL_checkstring(L, 1);
  xs2a_checksigopts(L, 4, &o);
  if ((pk = load_pubkey(L, 1)) == NULL) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "verify: not a certificate or public key");
    return 2;
  }
  is_ec = EVP_PKEY_base_id(pk) == EVP_PKEY_EC;
  if (is_ec && o.pss) { why = "padding 'pss' needs an RSA key"; goto cleanup; }
  if (!is_ec && EVP_PKEY_base_id(pk) != EVP_PKEY_RSA) { why = "unsupported key type"; goto cleanup; }
  if (is_ec && o.ec_raw) {
    if (siglen != 2 * xs2a_ec_halfsize(pk) ||
        !xs2a_ec_raw2der((const unsigned char *)sig, siglen, &der, &derlen)) {
      why = "signature has the wrong length";
      goto cleanup;
    }
    check = der;
    siglen = derlen;
  }
  if ((ctx = EVP_MD_CTX_new()) == NULL ||
      EVP_DigestVerifyInit(ctx, &pctx, (const EVP_MD *)o.md, NULL, pk) != 1) {
    why = "cannot set up the check";
    goto cleanup;
  }
  if (!is_ec && (EVP_PKEY_CTX_set_rsa_padding(pctx, o.pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) <= 0 ||
                 (o.pss && EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0))) {
    why = "cannot set up the padding";
    goto cleanup;
  }
  r = EVP_DigestVerify(ctx, check, siglen, (const unsigned char *)data, len);
  if (r != 1) why = "signature does not match";
cleanup:
  ERR_clear_error();
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pk);
  OPENSSL_free(der);
  return push_verdict(L, "verify", why);
}

/* core.random(n) -> n bytes from the CSPRNG */
static int core_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char *p;
  luaL_argcheck(L, n >= 0 && n <= MAX_RANDOM, 1, "out of range");
  if (n == 0) { lua_pushliteral(L, ""); return 1; }
  p = scratch(L, (size_t)n);
  if (RAND_bytes(p, (int)n) != 1) return luaL_error(L, "random: the CSPRNG failed");
  push_scratch(L, p, (size_t)n, (size_t)n);
  return 1;
}

/* ---- base64, both alphabets, strict ---- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* encodes s[0..len) into out (room for (len + 2) / 3 * 4 bytes); returns the length */
static size_t b64_into(const unsigned char *s, size_t len, char *out, const char *alpha, int pad) {
  size_t i, o = 0;
  for (i = 0; i + 2 < len; i += 3) {
    unsigned long v = ((unsigned long)s[i] << 16) | ((unsigned long)s[i + 1] << 8) | s[i + 2];
    out[o++] = alpha[(v >> 18) & 63];
    out[o++] = alpha[(v >> 12) & 63];
    out[o++] = alpha[(v >> 6) & 63];
    out[o++] = alpha[v & 63];
  }
  if (len - i == 1) {
    unsigned long v = (unsigned long)s[i] << 16;
    out[o++] = alpha[(v >> 18) & 63];
    out[o++] = alpha[(v >> 12) & 63];
    if (pad) { out[o++] = '='; out[o++] = '='; }
  } else if (len - i == 2) {
    unsigned long v = ((unsigned long)s[i] << 16) | ((unsigned long)s[i + 1] << 8);
    out[o++] = alpha[(v >> 18) & 63];
    out[o++] = alpha[(v >> 12) & 63];
    out[o++] = alpha[(v >> 6) & 63];
    if (pad) out[o++] = '=';
  }
  return o;
}

size_t xs2a_b64encode(const unsigned char *s, size_t len, char *out) {
  return b64_into(s, len, out, B64, 1);
}

static int b64_encode(lua_State *L, const char *alpha, int pad) {
  size_t len, outlen;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  unsigned char *out;
  if (len == 0) { lua_pushliteral(L, ""); return 1; }
  outlen = (len + 2) / 3 * 4;
  out = scratch(L, outlen);
  push_scratch(L, out, b64_into(s, len, (char *)out, alpha, pad), outlen);
  return 1;
}

static int b64_value(int c, int url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

/* standard: padded, length % 4 == 0; url: unpadded. Canonical only. */
static int b64_decode(lua_State *L, int url, const char *op) {
  size_t len, i, n, o = 0, full, rest;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char *out;
  n = len;
  if (!url) {
    if (len % 4 != 0) return xs2a_pusherror(L, op, "length is not a multiple of 4", NULL);
    if (n > 0 && s[n - 1] == '=') n--;
    if (n > 0 && s[n - 1] == '=') n--;
  }
  rest = n % 4;
  if (rest == 1) return xs2a_pusherror(L, op, "invalid length", NULL);
  full = n - rest;
  for (i = 0; i < n; i++)
    if (b64_value((unsigned char)s[i], url) < 0)
      return xs2a_pusherror(L, op, "invalid character", NULL);
  out = scratch(L, n / 4 * 3 + 3);
  for (i = 0; i < full; i += 4) {
    unsigned long v = ((unsigned long)b64_value((unsigned char)s[i], url) << 18) |
                      ((unsigned long)b64_value((unsigned char)s[i + 1], url) << 12) |
                      ((unsigned long)b64_value((unsigned char)s[i + 2], url) << 6) |
                      (unsigned long)b64_value((unsigned char)s[i + 3], url);
    out[o++] = (unsigned char)(v >> 16);
    out[o++] = (unsigned char)(v >> 8);
    out[o++] = (unsigned char)v;
  }
  if (rest > 0) {
    unsigned long v = ((unsigned long)b64_value((unsigned char)s[i], url) << 18) |
                      ((unsigned long)b64_value((unsigned char)s[i + 1], url) << 12);
    if (rest == 3) v |= (unsigned long)b64_value((unsigned char)s[i + 2], url) << 6;
    if ((rest == 2 && (v & 0xFFFF)) || (rest == 3 && (v & 0xFF))) {
      lua_pop(L, 1);
      return xs2a_pusherror(L, op, "non-canonical trailing bits", NULL);
    }
    out[o++] = (unsigned char)(v >> 16);
    if (rest == 3) out[o++] = (unsigned char)(v >> 8);
  }
  push_scratch(L, out, o, n / 4 * 3 + 3);
  return 1;
}

static int core_b64encode(lua_State *L) { return b64_encode(L, B64, 1); }
static int core_b64url_encode(lua_State *L) { return b64_encode(L, B64URL, 0); }
static int core_b64decode(lua_State *L) { return b64_decode(L, 0, "b64decode"); }
static int core_b64url_decode(lua_State *L) { return b64_decode(L, 1, "b64url_decode"); }

/* core.uuid4() -> RFC 4122 version 4, lowercase */
/* X-Request-IDs come from a pool of CSPRNG bytes per Lua state, filled 512
 * bytes at a time (one RAND_bytes call per 32 ids instead of one per id).
 * The pool is dropped when the process changes, so a forked child (an nginx
 * worker) never hands out ids its parent could also hand out. Request ids
 * are public values; nothing secret is drawn from this pool. */
typedef struct {
  unsigned char bytes[512];
  size_t pos;
  pid_t pid;
} uuidpool;

static int core_uuid4(lua_State *L) {
  static const char hexd[] = "0123456789abcdef";
  uuidpool *pool = (uuidpool *)lua_touserdata(L, lua_upvalueindex(1));
  unsigned char *r;
  char out[36];
  int i, o = 0;
  pid_t pid = getpid();
  if (pool->pos + 16 > sizeof pool->bytes || pool->pid != pid) {
    if (RAND_bytes(pool->bytes, sizeof pool->bytes) != 1) return luaL_error(L, "uuid4: the CSPRNG failed");
    pool->pos = 0;
    pool->pid = pid;
  }
  r = pool->bytes + pool->pos;
  pool->pos += 16;
  r[6] = (unsigned char)((r[6] & 0x0F) | 0x40);
  r[8] = (unsigned char)((r[8] & 0x3F) | 0x80);
  for (i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hexd[r[i] >> 4];
    out[o++] = hexd[r[i] & 15];
  }
  lua_pushlstring(L, out, sizeof out);
  return 1;
}

/* core.ct_equal(a, b): time depends on the length only, never on the contents */
static int core_ct_equal(lua_State *L) {
  size_t la, lb;
  const char *a = luaL_checklstring(L, 1, &la);
  const char *b = luaL_checklstring(L, 2, &lb);
  if (la != lb) {
    (void)CRYPTO_memcmp(a, a, la);
    lua_pushboolean(L, 0);
  } else {
    lua_pushboolean(L, CRYPTO_memcmp(a, b, la) == 0);
  }
  return 1;
}

/* core.hex(s) -> lowercase hex */
static int core_hex(lua_State *L) {
  static const char hexd[] = "0123456789abcdef";
  size_t len, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  unsigned char *out;
  if (len == 0) { lua_pushliteral(L, ""); return 1; }
  out = scratch(L, 2 * len);
  for (i = 0; i < len; i++) {
    out[2 * i] = hexd[s[i] >> 4];
    out[2 * i + 1] = hexd[s[i] & 15];
  }
  push_scratch(L, out, 2 * len, 2 * len);
  return 1;
}

/* Appends the certificates of the value at idx to sk: a PEM string (one or
 * more certificates), a DER string, or a list of such strings. 0 when a value
 * holds no certificate. */
static int push_certs(lua_State *L, int idx, STACK_OF(X509) *sk) {
  size_t len;
  const char *s;
  int before = sk_X509_num(sk);
  if (lua_type(L, idx) == LUA_TTABLE) {
    int i, n = (int)lua_rawlen(L, idx);
    for (i = 1; i <= n; i++) {
      int ok;
      lua_rawgeti(L, idx, i);
      ok = lua_type(L, -1) == LUA_TSTRING && push_certs(L, lua_gettop(L), sk);
      lua_pop(L, 1);
      if (!ok) return 0;
    }
    return n > 0;
  }
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  s = lua_tolstring(L, idx, &len);
  if (len <= INT_MAX && strstr(s, "-----BEGIN") != NULL) {
    BIO *b = BIO_new_mem_buf(s, (int)len);
    X509 *x;
    while (b != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
      if (!sk_X509_push(sk, x)) { X509_free(x); break; }
    BIO_free(b);
  } else {
    X509 *x = xs2a_parsecert(s, len);
    if (x != NULL && !sk_X509_push(sk, x)) X509_free(x);
  }
  ERR_clear_error();
  return sk_X509_num(sk) > before;
}

/* The verdict of X509_verify_cert for cert against anchors (trusted, each may
 * be a CA or the very certificate: partial chains allowed), with untrusted
 * intermediates and validity dates at `at` (0 = now). NULL = trusted. */
static const char *chain_verdict(X509 *cert, STACK_OF(X509) *anchors, STACK_OF(X509) *untrusted,
                                 lua_Integer at, char *buf, size_t bufsize) {
  X509_STORE *store = X509_STORE_new();
  X509_STORE_CTX *ctx = X509_STORE_CTX_new();
  const char *why = NULL;
  int i;
  if (store == NULL || ctx == NULL) { why = "out of memory"; goto done; }
  for (i = 0; i < sk_X509_num(anchors); i++)
    if (!X509_STORE_add_cert(store, sk_X509_value(anchors, i))) { why = "cannot add a trust anchor"; goto done; }
  if (!X509_STORE_CTX_init(ctx, store, cert, untrusted)) { why = "cannot set up the check"; goto done; }
  X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN);
  if (at > 0) X509_STORE_CTX_set_time(ctx, 0, (time_t)at);
  if (X509_verify_cert(ctx) != 1) {
    int e = X509_STORE_CTX_get_error(ctx);
    snprintf(buf, bufsize, "certificate not trusted: %s", X509_verify_cert_error_string(e));
    why = buf;
  }
done:
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  ERR_clear_error();
  return why;
}

/* 1 when the subject has exactly one organizationIdentifier (2.5.4.97) and it is want */
static int subject_org_id_is(X509 *cert, const char *want, size_t want_len) {
  ASN1_OBJECT *obj = OBJ_txt2obj("2.5.4.97", 1);
  X509_NAME *name = X509_get_subject_name(cert);
  int i = obj != NULL ? X509_NAME_get_index_by_OBJ(name, obj, -1) : -1, n, same = 0;
  unsigned char *utf8 = NULL;
  ASN1_OBJECT_free(obj);
  if (i < 0 || X509_NAME_get_index_by_OBJ(name, X509_NAME_ENTRY_get_object(X509_NAME_get_entry(name, i)), i) >= 0) {
    ERR_clear_error();
    return 0;                                   /* none, or more than one: no match */
  }
  n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
  if (n >= 0 && (size_t)n == want_len && memcmp(utf8, want, want_len) == 0) same = 1;
  OPENSSL_free(utf8);
  ERR_clear_error();
  return same;
}

/* core.cert_verify(cert, opts) -> true | false, reason
 * opts.anchors: trusted certificates (PEM bundle, DER, or a list); required:
 *   without one nothing is trusted (fail closed).
 * opts.chain: untrusted intermediates (same forms); opts.at: epoch seconds for
 * the date checks (default now); opts.organization_identifier: the subject's
 * organizationIdentifier must be exactly this (pin to the bank);
 * opts.fingerprint: hex SHA-256 of the certificate DER must be this (pin). */
static int core_cert_verify(lua_State *L) {
  size_t len, pin_len = 0;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *org = NULL, *fp = NULL, *why = NULL;
  STACK_OF(X509) *anchors = NULL, *untrusted = NULL;
  X509 *cert = NULL;
  lua_Integer at = 0;
  char buf[160];
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "organization_identifier");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, 2, "organization_identifier must be a string");
    org = lua_tolstring(L, -1, &pin_len);
  }
  lua_getfield(L, 2, "fingerprint");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, 2, "fingerprint must be a string");
    fp = lua_tostring(L, -1);
  }
  lua_getfield(L, 2, "at");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 1))
      luaL_argerror(L, 2, "at must be a positive number of seconds");
    at = (lua_Integer)lua_tonumber(L, -1);
  }
  lua_getfield(L, 2, "anchors");                   /* 3 org, 4 fp, 5 at, 6 anchors */
  lua_getfield(L, 2, "chain");                     /* 7 chain */
  if ((anchors = sk_X509_new_null()) == NULL || (untrusted = sk_X509_new_null()) == NULL) {
    why = "out of memory";
  } else if ((cert = xs2a_parsecert(s, len)) == NULL) {
    why = "not a certificate";
  } else if (lua_isnil(L, 6)) {
    why = "no trust anchor configured";
  } else if (!push_certs(L, 6, anchors)) {
    why = "a trust anchor is not a certificate";
  } else if (!lua_isnil(L, 7) && !(lua_istable(L, 7) && lua_rawlen(L, 7) == 0) &&
             !push_certs(L, 7, untrusted)) {
    why = "an intermediate certificate is not a certificate";
  } else if ((why = chain_verdict(cert, anchors, untrusted, at, buf, sizeof buf)) != NULL) {
    /* why set */
  } else if (org != NULL && !subject_org_id_is(cert, org, pin_len)) {
    why = "certificate is not the pinned organisation's";
  } else if (fp != NULL) {
    static const char hexd[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    unsigned int mdlen = 0, i;
    if (!X509_digest(cert, EVP_sha256(), md, &mdlen)) {
      why = "cannot digest the certificate";
    } else {
      for (i = 0; i < mdlen; i++) {
        hex[2 * i] = hexd[md[i] >> 4];
        hex[2 * i + 1] = hexd[md[i] & 15];
      }
      hex[2 * mdlen] = '\0';
      if (strlen(fp) != 2 * mdlen || OPENSSL_strcasecmp(fp, hex) != 0)
        why = "certificate is not the pinned certificate";
    }
  }
  ERR_clear_error();
  X509_free(cert);
  sk_X509_pop_free(anchors, X509_free);
  sk_X509_pop_free(untrusted, X509_free);
  return push_verdict(L, "cert_verify", why);
}

/* core.cert_issued_by(cert, issuer) -> true | false, reason: cert chains to
 * issuer (issuer's key verifies it, names and key usage fit) and both are
 * within their validity dates now. Same check as cert_verify with issuer as
 * the only anchor. */
static int core_cert_issued_by(lua_State *L) {
  size_t la, lb;
  const char *a = luaL_checklstring(L, 1, &la);
  const char *b = luaL_checklstring(L, 2, &lb);
  X509 *cert = xs2a_parsecert(a, la), *issuer = xs2a_parsecert(b, lb);
  STACK_OF(X509) *anchors = sk_X509_new_null();
  const char *why = NULL;
  char buf[160];
  if (cert == NULL || issuer == NULL) why = "not a certificate";
  else if (anchors == NULL || !sk_X509_push(anchors, issuer)) why = "out of memory";
  else {
    issuer = NULL;                                 /* owned by anchors now */
    why = chain_verdict(cert, anchors, NULL, 0, buf, sizeof buf);
  }
  ERR_clear_error();
  X509_free(cert);
  X509_free(issuer);
  sk_X509_pop_free(anchors, X509_free);
  return push_verdict(L, "cert_issued_by", why);
}

static const luaL_Reg crypto_funcs[] = {
  {"cert_issued_by", core_cert_issued_by},
  {"cert_verify", core_cert_verify},
  {"verify", core_verify},
  {"random", core_random},
  {"b64encode", core_b64encode},
  {"b64decode", core_b64decode},
  {"b64url_encode", core_b64url_encode},
  {"b64url_decode", core_b64url_decode},
  {"ct_equal", core_ct_equal},
  {"hex", core_hex},
  {NULL, NULL}
};

void xs2a_crypto_open(lua_State *L) {
  mdcache *c;
  luaL_setfuncs(L, crypto_funcs, 0);
  c = (mdcache *)lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  if (luaL_newmetatable(L, "xs2a.mdcache")) {
    lua_pushcfunction(L, mdcache_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);                         /* core, cache */
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, core_digest, 1);
  lua_setfield(L, -3, "digest");
  lua_pushcclosure(L, core_hmac, 1);
  lua_setfield(L, -2, "hmac");
  memset(lua_newuserdatauv(L, sizeof(uuidpool), 0), 0, sizeof(uuidpool));
  ((uuidpool *)lua_touserdata(L, -1))->pos = sizeof ((uuidpool *)0)->bytes;
  lua_pushcclosure(L, core_uuid4, 1);
  lua_setfield(L, -2, "uuid4");
}
