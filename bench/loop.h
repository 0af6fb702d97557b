/* bench/loop.h: what the raw C loops of `make bench` (curl_loop.c,
 * curl_pay.c) share: the answer buffer, the clocks, the X-Request-ID and
 * the headers every request carries. */
#ifndef XS2A_BENCH_LOOP_H
#define XS2A_BENCH_LOOP_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <curl/curl.h>
#include <openssl/rand.h>

typedef struct { char *p; size_t len, cap; } buf;

static size_t on_body(char *ptr, size_t size, size_t n, void *ud) {
  buf *b = (buf *)ud;
  size_t len = size * n;
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < b->len + len) cap *= 2;
    b->p = realloc(b->p, cap);
    if (b->p == NULL) return 0;
    b->cap = cap;
  }
  memcpy(b->p + b->len, ptr, len);
  b->len += len;
  return len;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void uuid4(char out[37]) {
  unsigned char b[16];
  static const char hex[] = "0123456789abcdef";
  int i, j = 0;
  RAND_bytes(b, sizeof b);
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  for (i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[j++] = '-';
    out[j++] = hex[b[i] >> 4];
    out[j++] = hex[b[i] & 15];
  }
  out[j] = '\0';
}

/* a new header list with X-Request-ID (id), Date (now) and Accept, as the
 * client sends them (free it with curl_slist_free_all) */
static struct curl_slist *base_headers(const char *id) {
  struct curl_slist *h = NULL;
  char line[80], date[64];
  time_t t = time(NULL);
  struct tm tm;
  snprintf(line, sizeof line, "X-Request-ID: %s", id);
  h = curl_slist_append(h, line);
  gmtime_r(&t, &tm);
  strftime(date, sizeof date, "Date: %a, %d %b %Y %H:%M:%S GMT", &tm);
  h = curl_slist_append(h, date);
  return curl_slist_append(h, "Accept: application/json");
}

#endif
