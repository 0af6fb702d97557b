--- libcrypto through LuaJIT FFI: digests, HMAC, random bytes, certificate
-- chain checks, signature verification and signing. Uses the libcrypto nginx
-- already has loaded (ffi.C), falling back to loading it by name.
-- This is deliberately independent of the client's C core.
local ffi = require "ffi"
local C

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
typedef struct x509_st X509;
typedef struct x509_store_st X509_STORE;
typedef struct x509_store_ctx_st X509_STORE_CTX;
typedef struct x509_name_st X509_NAME;
typedef struct bio_st BIO;
typedef struct bio_method_st BIO_METHOD;
typedef struct engine_st ENGINE;

int RAND_bytes(unsigned char *buf, int num);
const EVP_MD *EVP_get_digestbyname(const char *name);
int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size,
               const EVP_MD *type, ENGINE *impl);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,
                         ENGINE *e, EVP_PKEY *pkey);
int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sig, size_t siglen,
                     const unsigned char *tbs, size_t tbslen);
int EVP_DigestSignInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,
                       ENGINE *e, EVP_PKEY *pkey);
int EVP_DigestSign(EVP_MD_CTX *ctx, unsigned char *sigret, size_t *siglen,
                   const unsigned char *tbs, size_t tbslen);
int EVP_PKEY_CTX_set_rsa_padding(EVP_PKEY_CTX *ctx, int pad);
int EVP_PKEY_CTX_set_rsa_pss_saltlen(EVP_PKEY_CTX *ctx, int len);
int EVP_PKEY_get_base_id(const EVP_PKEY *pkey);
int EVP_PKEY_get_bits(const EVP_PKEY *pkey);
int EVP_PKEY_base_id(const EVP_PKEY *pkey);
int EVP_PKEY_bits(const EVP_PKEY *pkey);
void EVP_PKEY_free(EVP_PKEY *pkey);
X509 *d2i_X509(X509 **px, const unsigned char **in, long len);
void X509_free(X509 *a);
EVP_PKEY *X509_get_pubkey(X509 *x);
X509_STORE *X509_STORE_new(void);
void X509_STORE_free(X509_STORE *v);
int X509_STORE_add_cert(X509_STORE *ctx, X509 *x);
X509_STORE_CTX *X509_STORE_CTX_new(void);
void X509_STORE_CTX_free(X509_STORE_CTX *ctx);
int X509_STORE_CTX_init(X509_STORE_CTX *ctx, X509_STORE *store, X509 *x509, void *chain);
int X509_verify_cert(X509_STORE_CTX *ctx);
int X509_STORE_CTX_get_error(X509_STORE_CTX *ctx);
const char *X509_verify_cert_error_string(long n);
BIO *BIO_new_mem_buf(const void *buf, int len);
int BIO_free(BIO *a);
X509 *PEM_read_bio_X509(BIO *bp, X509 **x, void *cb, void *u);
EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, void *cb, void *u);
unsigned long ERR_get_error(void);
void ERR_clear_error(void);
void ERR_error_string_n(unsigned long e, char *buf, size_t len);
]]

local function has_crypto(lib)
  return pcall(function() return lib.RAND_bytes end)
end
if has_crypto(ffi.C) then
  C = ffi.C
else
  local ok, lib = pcall(ffi.load, "libcrypto.so.3")
  if not ok then lib = ffi.load("crypto") end
  C = lib
end

local ffi_new, ffi_string, ffi_gc, ffi_cast = ffi.new, ffi.string, ffi.gc, ffi.cast

-- OpenSSL 3 renamed these; 1.1 has the old names
local function sym(new, old)
  local ok, f = pcall(function() return C[new] end)
  if ok then return f end
  return C[old]
end
local pkey_base_id = sym("EVP_PKEY_get_base_id", "EVP_PKEY_base_id")
local pkey_bits = sym("EVP_PKEY_get_bits", "EVP_PKEY_bits")

local EVP_PKEY_RSA, EVP_PKEY_RSA_PSS, EVP_PKEY_EC = 6, 912, 408
local RSA_PKCS1_PSS_PADDING = 6
local RSA_PSS_SALTLEN_DIGEST, RSA_PSS_SALTLEN_AUTO = -1, -2

local _M = {}

-- Reads and clears the OpenSSL error queue (a leftover entry would resurface
-- on an unrelated TLS connection of this worker).
local function ssl_error(op)
  local buf = ffi_new("char[256]")
  local msgs = {}
  while true do
    local e = C.ERR_get_error()
    if e == 0 then break end
    C.ERR_error_string_n(e, buf, 256)
    msgs[#msgs + 1] = ffi_string(buf)
  end
  if #msgs == 0 then return op .. ": failed" end
  return op .. ": " .. table.concat(msgs, "; ")
end

--- `n` cryptographically random bytes.
function _M.random(n)
  local buf = ffi_new("unsigned char[?]", n)
  if C.RAND_bytes(buf, n) ~= 1 then error(ssl_error("RAND_bytes")) end
  return ffi_string(buf, n)
end

local md_names = {
  sha1 = "SHA1", sha256 = "SHA256", sha384 = "SHA384", sha512 = "SHA512",
}

local function md(alg)
  local name = md_names[alg]
  if not name then return nil end
  local m = C.EVP_get_digestbyname(name)
  if m == nil then return nil end
  return m
end

--- Raw digest of `data`; alg "sha1" | "sha256" | "sha384" | "sha512".
function _M.digest(alg, data)
  local m = md(alg)
  if not m then error("digest: unknown algorithm " .. tostring(alg), 2) end
  local out = ffi_new("unsigned char[64]")
  local len = ffi_new("unsigned int[1]")
  if C.EVP_Digest(data, #data, out, len, m, nil) ~= 1 then error(ssl_error("EVP_Digest")) end
  return ffi_string(out, len[0])
end

function _M.sha256(data) return _M.digest("sha256", data) end

--- Raw HMAC of `data` with `key`.
function _M.hmac(alg, key, data)
  local m = md(alg)
  if not m then error("hmac: unknown algorithm " .. tostring(alg), 2) end
  local out = ffi_new("unsigned char[64]")
  local len = ffi_new("unsigned int[1]")
  if C.HMAC(m, key, #key, data, #data, out, len) == nil then error(ssl_error("HMAC")) end
  return ffi_string(out, len[0])
end

--- Constant-time string comparison.
function _M.equal(a, b)
  if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then return false end
  local bit = require "bit"
  local d = 0
  for i = 1, #a do d = bit.bor(d, bit.bxor(a:byte(i), b:byte(i))) end
  return d == 0
end

--- Parses a DER certificate into an X509* (garbage-collected).
-- @return cdata, or nil, message
function _M.x509_from_der(der)
  local buf = ffi_new("const unsigned char *[1]")
  local keep = ffi_new("unsigned char[?]", #der)
  ffi.copy(keep, der, #der)
  buf[0] = keep
  local x = C.d2i_X509(nil, buf, #der)
  if x == nil then return nil, ssl_error("d2i_X509") end
  return ffi_gc(x, C.X509_free)
end

local function x509_from_pem(pem)
  local bio = C.BIO_new_mem_buf(pem, #pem)
  if bio == nil then return nil, ssl_error("BIO_new_mem_buf") end
  local x = C.PEM_read_bio_X509(bio, nil, nil, nil)
  C.BIO_free(bio)
  if x == nil then return nil, ssl_error("PEM_read_bio_X509") end
  return ffi_gc(x, C.X509_free)
end

--- Loads a PEM private key (unencrypted).
-- @return EVP_PKEY cdata, or nil, message
function _M.private_key_from_pem(pem)
  local bio = C.BIO_new_mem_buf(pem, #pem)
  if bio == nil then return nil, ssl_error("BIO_new_mem_buf") end
  local k = C.PEM_read_bio_PrivateKey(bio, nil, nil, nil)
  C.BIO_free(bio)
  if k == nil then
    C.ERR_clear_error()
    return nil, "PEM_read_bio_PrivateKey: cannot read the key"
  end
  return ffi_gc(k, C.EVP_PKEY_free)
end

-- trust stores per CA file contents (per worker)
local stores = {}

local function store_for(ca_pem)
  local st = stores[ca_pem]
  if st then return st end
  local s = C.X509_STORE_new()
  if s == nil then return nil, ssl_error("X509_STORE_new") end
  s = ffi_gc(s, C.X509_STORE_free)
  local n = 0
  for block in ca_pem:gmatch("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END CERTIFICATE%-%-%-%-%-") do
    local x, err = x509_from_pem(block)
    if not x then return nil, err end
    if C.X509_STORE_add_cert(s, x) ~= 1 then return nil, ssl_error("X509_STORE_add_cert") end
    n = n + 1
  end
  if n == 0 then return nil, "CA file holds no certificate" end
  stores[ca_pem] = s
  return s
end

--- Verifies that certificate `x` (X509 cdata) chains to a CA in `ca_pem`
-- and is within its validity period.
-- @return true, or false, reason ("certificate has expired", ...), verify error code
function _M.verify_chain(x, ca_pem)
  local store, err = store_for(ca_pem)
  if not store then return false, err end
  local ctx = C.X509_STORE_CTX_new()
  if ctx == nil then return false, ssl_error("X509_STORE_CTX_new") end
  local ok, reason, code = false, nil, nil
  if C.X509_STORE_CTX_init(ctx, store, x, nil) == 1 then
    if C.X509_verify_cert(ctx) == 1 then
      ok = true
    else
      code = C.X509_STORE_CTX_get_error(ctx)
      reason = ffi_string(C.X509_verify_cert_error_string(code))
    end
  else
    reason = ssl_error("X509_STORE_CTX_init")
  end
  C.X509_STORE_CTX_free(ctx)
  C.ERR_clear_error()
  return ok, reason, code and tonumber(code)
end

--- X509_V_ERR_CERT_HAS_EXPIRED
_M.ERR_CERT_HAS_EXPIRED = 10

--- The public key of a certificate and its type.
-- @return EVP_PKEY cdata, "rsa"|"rsa-pss"|"ec"|"other", bits; or nil, message
function _M.public_key(x)
  local k = C.X509_get_pubkey(x)
  if k == nil then return nil, ssl_error("X509_get_pubkey") end
  k = ffi_gc(k, C.EVP_PKEY_free)
  local id = pkey_base_id(k)
  local kind = (id == EVP_PKEY_RSA and "rsa") or (id == EVP_PKEY_RSA_PSS and "rsa-pss")
    or (id == EVP_PKEY_EC and "ec") or "other"
  return k, kind, tonumber(pkey_bits(k))
end

local function key_kind(k)
  local id = pkey_base_id(k)
  return (id == EVP_PKEY_RSA and "rsa") or (id == EVP_PKEY_RSA_PSS and "rsa-pss")
    or (id == EVP_PKEY_EC and "ec") or "other"
end
_M.key_kind = key_kind

--- Verifies `sig` over `data` with public key `pkey`.
-- opts.hash = "sha256"|"sha384"|"sha512"; opts.padding = "pkcs1"|"pss" (RSA).
-- EC signatures must be DER.
-- @return true, or false, reason
function _M.verify(pkey, data, sig, opts)
  local m = md(opts.hash or "sha256")
  if not m then return false, "unknown hash" end
  local ctx = C.EVP_MD_CTX_new()
  if ctx == nil then return false, ssl_error("EVP_MD_CTX_new") end
  local pctx = ffi_new("EVP_PKEY_CTX *[1]")
  local ok, reason = false, "signature does not verify"
  if C.EVP_DigestVerifyInit(ctx, pctx, m, nil, pkey) == 1 then
    local kind = key_kind(pkey)
    local setup = true
    if kind == "rsa" and opts.padding == "pss" then
      setup = C.EVP_PKEY_CTX_set_rsa_padding(pctx[0], RSA_PKCS1_PSS_PADDING) == 1
        and C.EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx[0], RSA_PSS_SALTLEN_AUTO) == 1
    end
    if setup then
      local rc = C.EVP_DigestVerify(ctx, ffi_cast("const unsigned char *", sig), #sig,
        ffi_cast("const unsigned char *", data), #data)
      ok = rc == 1
    else
      reason = "cannot set RSA padding"
    end
  else
    reason = "key does not fit the algorithm"
  end
  C.EVP_MD_CTX_free(ctx)
  C.ERR_clear_error()
  if ok then return true end
  return false, reason
end

--- Signs `data` with private key `pkey` (same opts as verify). EC gives DER.
-- @return signature bytes, or nil, message
function _M.sign(pkey, data, opts)
  local m = md(opts.hash or "sha256")
  if not m then return nil, "unknown hash" end
  local ctx = C.EVP_MD_CTX_new()
  if ctx == nil then return nil, ssl_error("EVP_MD_CTX_new") end
  local pctx = ffi_new("EVP_PKEY_CTX *[1]")
  local res, err
  if C.EVP_DigestSignInit(ctx, pctx, m, nil, pkey) == 1 then
    local setup = true
    if key_kind(pkey) == "rsa" and opts.padding == "pss" then
      setup = C.EVP_PKEY_CTX_set_rsa_padding(pctx[0], RSA_PKCS1_PSS_PADDING) == 1
        and C.EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx[0], RSA_PSS_SALTLEN_DIGEST) == 1
    end
    local len = ffi_new("size_t[1]")
    if setup and C.EVP_DigestSign(ctx, nil, len, data, #data) == 1 then
      local buf = ffi_new("unsigned char[?]", len[0])
      if C.EVP_DigestSign(ctx, buf, len, data, #data) == 1 then
        res = ffi_string(buf, len[0])
      end
    end
  end
  if not res then err = ssl_error("EVP_DigestSign") end
  C.EVP_MD_CTX_free(ctx)
  C.ERR_clear_error()
  return res, err
end

return _M
