/* core.h: what the files of xs2a.core share. */
#ifndef XS2A_CORE_H
#define XS2A_CORE_H

#include "compat.h"

#define XS2A_IDENTITY "xs2a.Identity"
#define XS2A_SESSION "xs2a.Session"

/* err.c */
int xs2a_pushsslerror(lua_State *L, const char *op);       /* nil, "op: ...", "ssl" */
int xs2a_pusherror(lua_State *L, const char *op, const char *msg, const char *code);
void xs2a_newclass(lua_State *L, const char *name, const luaL_Reg *methods,
                   const luaL_Reg *meta);

/* Each part adds its functions to the core table on top of the stack. */
void xs2a_identity_open(lua_State *L);
void xs2a_crypto_open(lua_State *L);
void xs2a_http_open(lua_State *L);
void xs2a_time_open(lua_State *L);
void xs2a_json_open(lua_State *L);     /* json.c: the pass over cjson's result (xs2a.codec.json) */
void xs2a_fs_open(lua_State *L);       /* fs.c: file-store helpers (xs2a.store.file) */
/* fs.c: a whole file into a buffer that leaves no copy in freed memory
 * (identity files, file-store records); 0 or an errno value */
int xs2a_read_file(const char *path, size_t max, int nofollow, unsigned char **buf, size_t *len, size_t *cap);

/* identity.c, for the HTTP session: borrow the OpenSSL objects of an
 * identity (NULL if closed). The caller keeps the identity alive. */
struct x509_st;
struct evp_pkey_st;
typedef struct xs2a_identity xs2a_identity;
xs2a_identity *xs2a_checkidentity(lua_State *L, int idx);   /* raises if closed */
struct x509_st *xs2a_identity_cert(xs2a_identity *id);
struct evp_pkey_st *xs2a_identity_key(xs2a_identity *id);
struct stack_st_X509;
struct stack_st_X509 *xs2a_identity_chain(xs2a_identity *id);   /* extra certificates, may be NULL */
int xs2a_identity_from_files(lua_State *L, const char *cert, const char *key);   /* id | nil, msg, code */

/* Shared between identity.c and crypto.c (not for other parts). */
struct evp_md_st;
typedef struct xs2a_sigopts {
  const struct evp_md_st *md;   /* borrowed static digest */
  int pss;                      /* RSA: 1 = PSS (salt = digest length), 0 = PKCS#1 v1.5 */
  int ec_raw;                   /* EC: 1 = raw r||s, 0 = DER */
} xs2a_sigopts;
/* reads {hash=, padding=, ec_format=} at idx (nil allowed); raises on bad values */
void xs2a_checksigopts(lua_State *L, int idx, xs2a_sigopts *o);
/* ECDSA DER <-> raw r||s (each half nlen bytes); return 0 on failure */
int xs2a_ec_der2raw(const unsigned char *der, size_t der_len, size_t nlen,
                    unsigned char *raw);
int xs2a_ec_raw2der(const unsigned char *raw, size_t raw_len,
                    unsigned char **der, size_t *der_len);   /* OPENSSL_free(*der) */
/* standard base64 with padding of s[0..len) into out (room for
 * (len + 2) / 3 * 4 bytes, no NUL added); returns the length written */
size_t xs2a_b64encode(const unsigned char *s, size_t len, char *out);
/* a certificate from PEM or DER bytes; NULL (error queue cleared) if neither */
struct x509_st *xs2a_parsecert(const char *s, size_t len);
/* pushes the info() table of cert */
void xs2a_pushcertinfo(lua_State *L, struct x509_st *cert);
/* signs data (hashed here with o->md) with the identity's key into sig;
 * *siglen: buffer size in, signature length out; 1 ok, 0 error queued */
int xs2a_identity_sign_raw(xs2a_identity *id, const xs2a_sigopts *o,
                           const unsigned char *data, size_t len,
                           unsigned char *sig, size_t *siglen);
/* pkcs11.c: keys in a PKCS#11 token (the only user of the ENGINE API) */
typedef struct xs2a_p11 xs2a_p11;
int xs2a_p11_is_uri(const char *s, size_t len);            /* starts with "pkcs11:" */
int xs2a_p11_open(lua_State *L, const char *module, const char *key_uri, const char *cert_uri,
                  int pin_fn, const char *pin, size_t pin_len, const char *pin_env,
                  xs2a_p11 **out, struct evp_pkey_st **key, struct x509_st **cert);
int xs2a_p11_reopen(lua_State *L, xs2a_p11 *p, int pin_fn, struct evp_pkey_st **key);
void xs2a_p11_free(xs2a_p11 *p);
int xs2a_p11_other_process(const xs2a_p11 *p);             /* opened before a fork */
const char *xs2a_p11_token(const xs2a_p11 *p);             /* token label or NULL */
/* identity.c: frees the identity's key and its signing contexts (key = NULL) */
void xs2a_identity_drop_key(xs2a_identity *id);
/* byte size of one ECDSA half (r or s) for an EC key, 0 if not EC */
size_t xs2a_ec_halfsize(const struct evp_pkey_st *key);

#endif
