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

/* identity.c, for the HTTP session: borrow the OpenSSL objects of an
 * identity (NULL if closed). The caller keeps the identity alive. */
struct x509_st;
struct evp_pkey_st;
typedef struct xs2a_identity xs2a_identity;
xs2a_identity *xs2a_checkidentity(lua_State *L, int idx);   /* raises if closed */
struct x509_st *xs2a_identity_cert(xs2a_identity *id);
struct evp_pkey_st *xs2a_identity_key(xs2a_identity *id);
/* PEM (certificate, extra certificates) and private key as PEM, in buffers
 * that the caller frees with OPENSSL_clear_free(buf, len). 0 on failure. */
int xs2a_identity_pem(xs2a_identity *id, char **cert, size_t *cert_len,
                      char **key, size_t *key_len);

#endif
