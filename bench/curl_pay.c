/* curl_pay.c: the floor for `make bench`'s payment row. A raw libcurl and
 * OpenSSL client that does what the Lua client does for one signed payment
 * POST, with nothing else: a fresh (TLS-resumed) mTLS connection per
 * payment (CURLOPT_FRESH_CONNECT, as the client's transport), the Berlin
 * Group signature of the body with an RSA QSealC (Digest, Signature over
 * "digest x-request-id", TPP-Signature-Certificate), X-Request-ID as a
 * fresh UUID, Date, Content-Type and Accept, the answer read into memory.
 *
 *   curl_pay URL CERT KEY CA SEAL_CERT SEAL_KEY N
 * prints: "requests <n> wall <seconds> cpu <seconds> connects <n>" */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include "loop.h"

/* base64 of s[0..n) into a new string (free it) */
static char *b64(const unsigned char *s, int n) {
  char *out = malloc((size_t)(4 * ((n + 2) / 3) + 1));
  if (out != NULL) EVP_EncodeBlock((unsigned char *)out, s, n);
  return out;
}

/* the client identity and the trust store, parsed once and installed into
 * each new connection's SSL_CTX, as the client's transport does (libcurl
 * would otherwise parse the PEM files again for every connection) */
static X509 *tls_cert;
static EVP_PKEY *tls_key;
static X509_STORE *tls_store;

static CURLcode ssl_ctx_setup(CURL *curl, void *sslctx, void *ud) {
  SSL_CTX *ctx = (SSL_CTX *)sslctx;
  (void)curl;
  (void)ud;
  SSL_CTX_set1_cert_store(ctx, tls_store);
  if (SSL_CTX_use_certificate(ctx, tls_cert) != 1 || SSL_CTX_use_PrivateKey(ctx, tls_key) != 1)
    return CURLE_SSL_CERTPROBLEM;
  return CURLE_OK;
}

/* the concatenation of the strings up to a NULL, in a new string (free it) */
static char *join(const char *first, ...) {
  va_list ap;
  size_t len = 0, o = 0;
  const char *p;
  char *out;
  va_start(ap, first);
  for (p = first; p != NULL; p = va_arg(ap, const char *)) len += strlen(p);
  va_end(ap);
  if ((out = malloc(len + 1)) == NULL) return NULL;
  va_start(ap, first);
  for (p = first; p != NULL; p = va_arg(ap, const char *)) {
    memcpy(out + o, p, strlen(p));
    o += strlen(p);
  }
  va_end(ap);
  out[o] = '\0';
  return out;
}

static void die(const char *what) {
  fprintf(stderr, "curl_pay: %s\n", what);
  exit(1);
}

int main(int argc, char **argv) {
  static const char body[] = "{\"creditorAccount\":{\"iban\":\"LT601010012345678901\"},\"creditorName\":\"Bench\","
                             "\"instructedAmount\":{\"amount\":\"123.45\",\"currency\":\"EUR\"},"
                             "\"remittanceInformationUnstructured\":\"bench\"}";
  CURL *e;
  buf answer = { NULL, 0, 0 };
  long i, n, connects = 0, total_connects = 0;
  double t0, c0;
  FILE *f;
  X509 *seal;
  EVP_PKEY *key;
  unsigned char *der = NULL, md[32];
  int der_len;
  char *cert_b64, *digest_b64, key_id[512], serial_hex[80], issuer[256];
  char *line_cert;
  BIGNUM *bn;
  char *hex;
  if (argc != 8) {
    fprintf(stderr, "usage: curl_pay URL CERT KEY CA SEAL_CERT SEAL_KEY N\n");
    return 2;
  }
  if ((f = fopen(argv[2], "r")) == NULL || (tls_cert = PEM_read_X509(f, NULL, NULL, NULL)) == NULL) die("cert");
  fclose(f);
  if ((f = fopen(argv[3], "r")) == NULL || (tls_key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL) die("key");
  fclose(f);
  if ((tls_store = X509_STORE_new()) == NULL || X509_STORE_load_file(tls_store, argv[4]) != 1) die("ca");
  n = atol(argv[7]);
  if ((f = fopen(argv[5], "r")) == NULL || (seal = PEM_read_X509(f, NULL, NULL, NULL)) == NULL) die("seal cert");
  fclose(f);
  if ((f = fopen(argv[6], "r")) == NULL || (key = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL) die("seal key");
  fclose(f);
  if ((der_len = i2d_X509(seal, &der)) <= 0 || (cert_b64 = b64(der, der_len)) == NULL) die("cert der");
  bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(seal), NULL);
  hex = BN_bn2hex(bn);
  snprintf(serial_hex, sizeof serial_hex, "%s", hex);
  OPENSSL_free(hex);
  BN_free(bn);
  X509_NAME_oneline(X509_get_issuer_name(seal), issuer, sizeof issuer);
  snprintf(key_id, sizeof key_id, "SN=%s,CA=%s", serial_hex, issuer);
  /* the body is the same for every payment: so is its digest */
  SHA256((const unsigned char *)body, sizeof body - 1, md);
  if ((digest_b64 = b64(md, 32)) == NULL) die("digest");
  if ((line_cert = join("TPP-Signature-Certificate: ", cert_b64, (char *)NULL)) == NULL) die("memory");

  curl_global_init(CURL_GLOBAL_DEFAULT);
  e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, argv[1]);
  curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
  curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
  curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_setup);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)(sizeof body - 1));
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)&answer);
  t0 = now_s();
  c0 = cpu_s();
  for (i = 0; i <= n; i++) {             /* payment 0 warms up: not counted */
    struct curl_slist *h;
    char id[37], digest[80], tosign[200], *sig_b64, *sigline;
    unsigned char sig[1024];
    size_t siglen = sizeof sig;
    long status = 0;
    EVP_MD_CTX *mc = EVP_MD_CTX_new();
    if (i == 1) { t0 = now_s(); c0 = cpu_s(); }
    uuid4(id);
    snprintf(digest, sizeof digest, "SHA-256=%s", digest_b64);
    snprintf(tosign, sizeof tosign, "digest: %s\nx-request-id: %s", digest, id);
    if (mc == NULL || EVP_DigestSignInit(mc, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(mc, sig, &siglen, (const unsigned char *)tosign, strlen(tosign)) != 1)
      die("sign");
    EVP_MD_CTX_free(mc);
    if ((sig_b64 = b64(sig, (int)siglen)) == NULL ||
        (sigline = join("Signature: keyId=\"", key_id, "\",algorithm=\"rsa-sha256\",headers=\"digest x-request-id\","
                        "signature=\"", sig_b64, "\"", (char *)NULL)) == NULL)
      die("memory");
    {
      char l2[100];
      h = base_headers(id);
      h = curl_slist_append(h, "Content-Type: application/json");
      h = curl_slist_append(h, "Expect:");
      snprintf(l2, sizeof l2, "Digest: %s", digest);
      h = curl_slist_append(h, l2);
      h = curl_slist_append(h, sigline);
      h = curl_slist_append(h, line_cert);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    answer.len = 0;
    if (curl_easy_perform(e) != CURLE_OK) die("request failed");
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects);
    total_connects += connects;
    curl_slist_free_all(h);
    free(sig_b64);
    free(sigline);
    if (status != 201) { fprintf(stderr, "curl_pay: status %ld\n", status); return 1; }
  }
  printf("requests %ld wall %.6f cpu %.6f connects %ld\n", n, now_s() - t0, cpu_s() - c0, total_connects);
  curl_easy_cleanup(e);
  free(answer.p);
  free(line_cert);
  free(cert_b64);
  free(digest_b64);
  OPENSSL_free(der);
  EVP_PKEY_free(key);
  X509_free(seal);
  EVP_PKEY_free(tls_key);
  X509_free(tls_cert);
  X509_STORE_free(tls_store);
  curl_global_cleanup();
  return 0;
}
