"""The Python reference of `make bench`: requests.Session over one kept-alive
mTLS connection, with the headers the Lua client sends.

    python3 bench/py_requests.py URL CERT KEY CA N
prints: "requests <n> wall <seconds>" (after one warm-up request)"""
import email.utils
import sys
import time
import uuid

import requests


def main():
    url, cert, key, ca, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    s = requests.Session()
    s.cert = (cert, key)
    s.verify = ca

    def one():
        r = s.get(url, verify=ca, headers={"X-Request-ID": str(uuid.uuid4()),
                                "Date": email.utils.formatdate(usegmt=True),
                                "Accept": "application/json"})
        if r.status_code != 200:
            raise SystemExit("status %d" % r.status_code)
        r.json()

    one()
    t0 = time.monotonic()
    for _ in range(n):
        one()
    print("requests %d wall %.6f" % (n, time.monotonic() - t0))


main()
