/* curl_loop.c: the floor for `make bench`. A raw libcurl client that does
 * what the Lua client's transport does for one GET, with nothing else:
 * the same mTLS identity and CA, HTTP/2 offered through ALPN, the headers
 * the client sends (X-Request-ID as a fresh UUID, Date, Accept), the body
 * read into memory. One easy handle, so one kept-alive connection.
 *
 *   curl_loop URL CERT KEY CA N
 * prints: "requests <n> wall <seconds> cpu <seconds> connects <n>" */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <curl/curl.h>
#include <openssl/rand.h>
#include "loop.h"

int main(int argc, char **argv) {
  CURL *e;
  buf body = { NULL, 0, 0 };
  long i, n, connects = 0, total_connects = 0;
  double t0, c0;
  if (argc != 6) {
    fprintf(stderr, "usage: curl_loop URL CERT KEY CA N\n");
    return 2;
  }
  n = atol(argv[5]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, argv[1]);
  curl_easy_setopt(e, CURLOPT_SSLCERT, argv[2]);
  curl_easy_setopt(e, CURLOPT_SSLKEY, argv[3]);
  curl_easy_setopt(e, CURLOPT_CAINFO, argv[4]);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)&body);
  t0 = now_s();
  c0 = cpu_s();
  for (i = 0; i <= n; i++) {             /* request 0 warms up: not counted */
    struct curl_slist *h;
    char id[37];
    long status = 0;
    if (i == 1) { t0 = now_s(); c0 = cpu_s(); }
    uuid4(id);
    h = base_headers(id);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    body.len = 0;
    if (curl_easy_perform(e) != CURLE_OK) { fprintf(stderr, "curl_loop: request failed\n"); return 1; }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects);
    total_connects += connects;
    curl_slist_free_all(h);
    if (status != 200) { fprintf(stderr, "curl_loop: status %ld\n", status); return 1; }
  }
  printf("requests %ld wall %.6f cpu %.6f connects %ld\n", n, now_s() - t0, cpu_s() - c0, total_connects);
  curl_easy_cleanup(e);
  free(body.p);
  curl_global_cleanup();
  return 0;
}
