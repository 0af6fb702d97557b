#!/usr/bin/python3
"""Validates recorded XS2A requests against the Berlin Group OpenAPI file.

    validate.py SPEC.yaml REQUESTS.jsonl  ->  JSON report on stdout
    validate.py --examples SPEC.yaml      ->  the file's example responses

REQUESTS.jsonl is the sandbox's request log (sandbox/lua/sandbox/recorder.lua):
one JSON object per line with variant, method, path (below the variant
root), query (raw), headers (lower-case names) and body. Every request under
/v1/ is matched to its operation and checked with a JSON-Schema validator
(python3-jsonschema): path, query and header parameters (presence of the
required ones, each value against its schema, no query parameter the
operation does not define) and the JSON body against the request body
schema. The file is patched in memory first, never on disk; the patches are
listed in spec/openapi/README.md.

The report: {"types": {type: {"count", "valid", "errors"}}, "skipped": n}
where a type is "<variant> <METHOD> <path template>" plus, for payments,
"[service/product]" and, for authorisation bodies, the form that matched.
"""
import json
import re
import sys
import urllib.parse

import yaml
from jsonschema import Draft7Validator, FormatChecker, RefResolver

try:
    from yaml import CSafeLoader as Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as Loader

# header parameters OpenAPI 3.0 says to ignore (section 4.7.12)
IGNORED_HEADERS = {"accept", "content-type", "authorization"}

# the forms of an authorisation request body, by the member that names them
FORMS = [
    ("psuData", "update PSU authentication"),
    ("authenticationMethodId", "select SCA method"),
    ("scaAuthenticationData", "transaction authorisation"),
    ("confirmationCode", "authorisation confirmation"),
]
EMPTY_ONLY = {"type": "object", "maxProperties": 0}

# Georgia 0.8 names its own payment products (xs2a-reference section 8)
GEORGIAN_PRODUCTS = ["aspsp", "domestic", "foreign"]

# the payment initiation body of each payment service (patch 3)
SERVICE_BODY = {
    "payments": "paymentInitiation_json",
    "periodic-payments": "periodicPaymentInitiation_json",
    "bulk-payments": "bulkPaymentInitiation_json",
}


def patch(spec):
    """Patch 1: oneOf [ {}, ... ] in request bodies. {} matches every body,
    so any non-empty body matches two branches and fails "exactly one"; the
    copy makes the first branch match only the empty object."""
    n = 0
    for item in spec["paths"].values():
        for op in item.values():
            if not isinstance(op, dict):
                continue
            body = op.get("requestBody")
            if not isinstance(body, dict):
                continue
            for media in body.get("content", {}).values():
                one = media.get("schema", {}).get("oneOf")
                if isinstance(one, list):
                    for i, s in enumerate(one):
                        if s == {}:
                            one[i] = dict(EMPTY_ONLY)
                            n += 1
    return n


def georgian(spec):
    """Patch 2 (Georgia only): the payment-product enum gets the Georgian
    products."""
    p = spec["components"]["parameters"]["paymentProduct"]
    p["schema"]["enum"] = list(p["schema"]["enum"]) + GEORGIAN_PRODUCTS


def resolve(spec, obj):
    while isinstance(obj, dict) and "$ref" in obj:
        ref = obj["$ref"]
        node = spec
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def compile_paths(spec):
    out = []
    for tpl, item in spec["paths"].items():
        names = re.findall(r"{([^}]+)}", tpl)
        rx = "^" + re.sub(r"{[^}]+}", "([^/]+)", re.escape(tpl).replace(r"\{", "{").replace(r"\}", "}")) + "$"
        literal = len([s for s in tpl.split("/") if s and not s.startswith("{")])
        out.append((re.compile(rx), names, literal, tpl, item))
    return out


def coerce(value, schema):
    t = schema.get("type")
    if t == "boolean":
        if value in ("true", "false"):
            return value == "true"
    elif t == "integer":
        try:
            return int(value)
        except ValueError:
            pass
    elif t == "number":
        try:
            return float(value)
        except ValueError:
            pass
    return value


class Checker:
    def __init__(self, spec):
        self.spec = spec
        self.paths = compile_paths(spec)
        self.resolver = RefResolver.from_schema(spec)
        self.formats = FormatChecker()

    def errors_of(self, schema, value):
        v = Draft7Validator(schema, resolver=self.resolver, format_checker=self.formats)
        out = []
        for e in v.iter_errors(value):
            where = "/".join(str(p) for p in e.absolute_path) or "(top)"
            # a failed oneOf/anyOf says little; name what each branch refused
            subs = sorted({"%s: %s" % ("/".join(str(p) for p in c.absolute_path) or "(top)", c.message[:160])
                           for c in (e.context or [])})
            text = "%s: %s" % (where, e.message[:200]) if not subs else \
                "%s: no single %s branch fits (%s)" % (where, e.validator, "; ".join(subs[:6]))
            out.append(text)
        return out

    def match(self, method, path):
        best = None
        for rx, names, literal, tpl, item in self.paths:
            m = rx.match(path)
            if m and method in item and (best is None or literal > best[2]):
                best = (dict(zip(names, (urllib.parse.unquote(g) for g in m.groups()))), tpl, literal, item)
        return best

    def check(self, req):
        method = req["method"].lower()
        found = self.match(method, req["path"])
        if not found:
            return None, ["no operation " + req["method"] + " " + req["path"] + " in the OpenAPI file"]
        values, tpl, _, item = found
        op = item[method]
        key = req["method"] + " " + tpl
        if "payment-service" in values:
            key += " [" + values["payment-service"] + "/" + values["payment-product"] + "]"
        errs = []
        params = [resolve(self.spec, p) for p in item.get("parameters", []) + op.get("parameters", [])]
        query = urllib.parse.parse_qs(req.get("query") or "", keep_blank_values=True)
        headers = {k.lower(): v for k, v in req["headers"].items()}
        known_query = set()
        for p in params:
            where, name, schema = p["in"], p["name"], resolve(self.spec, p.get("schema", {}))
            if where == "path":
                got = [values.get(name)]
            elif where == "query":
                known_query.add(name)
                got = query.get(name)
            elif where == "header":
                if name.lower() in IGNORED_HEADERS:
                    continue
                got = headers.get(name.lower())
                got = None if got is None else [got]
            else:
                continue
            if got is None or got == [None]:
                if p.get("required"):
                    errs.append("missing required %s parameter %s" % (where, name))
                continue
            if len(got) > 1 and schema.get("type") != "array":
                errs.append("%s parameter %s sent %d times" % (where, name, len(got)))
            for g in got:
                for e in self.errors_of(schema, coerce(g, schema)):
                    errs.append("%s parameter %s=%r: %s" % (where, name, g, e))
        for name in query:
            if name not in known_query:
                errs.append("query parameter %s is not defined for %s" % (name, key))
        body = req.get("body") or ""
        rb = resolve(self.spec, op.get("requestBody")) if op.get("requestBody") else None
        if rb:
            ctype = (headers.get("content-type") or "").split(";")[0].strip().lower()
            if body == "":
                if rb.get("required"):
                    errs.append("request body is required")
            elif ctype != "application/json":
                errs.append("body sent as %r, expected application/json" % ctype)
            else:
                media = rb.get("content", {}).get("application/json")
                if not media:
                    errs.append("the operation takes no JSON body")
                else:
                    try:
                        doc = json.loads(body)
                    except ValueError as e:
                        doc = None
                        errs.append("body is not JSON: %s" % e)
                    if doc is not None:
                        schema = media["schema"]
                        if "payment-service" in values and tpl.endswith("{payment-product}"):
                            # patch 3: one operation serves the three payment
                            # services with oneOf [single, periodic, bulk]; a
                            # periodic body is also a valid single one (no
                            # additionalProperties: false), so the oneOf can
                            # never pass; the path's service picks the branch
                            name = SERVICE_BODY.get(values["payment-service"])
                            if name:
                                schema = {"$ref": "#/components/schemas/" + name}
                        errs.extend("body: " + e for e in self.errors_of(schema, doc))
                        if "authorisations" in tpl and isinstance(doc, dict):
                            form = "other"
                            if not doc:
                                form = "start" if method == "post" else "update PSU identification"
                            for member, name in FORMS:
                                if member in doc:
                                    form = name
                            key += " (" + form + ")"
        elif body != "":
            errs.append("the operation takes no body, but one was sent")
        return key, errs


def examples(spec_path):
    """--examples: every example response of the file as a JSON list of
    {method, path, status, media, name, value}."""
    with open(spec_path) as f:
        spec = yaml.load(f, Loader=Loader)
    out = []
    for tpl, item in spec["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            for status, r in op.get("responses", {}).items():
                r = resolve(spec, r)
                for media, c in (r.get("content") or {}).items():
                    named = dict(c.get("examples") or {})
                    if "example" in c:
                        named["example"] = {"value": c["example"]}
                    for name, ex in sorted(named.items()):
                        ex = resolve(spec, ex)
                        out.append({"method": method.upper(), "path": tpl, "status": int(status), "media": media,
                                    "name": name, "value": ex.get("value")})
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


def main(argv):
    if argv[1] == "--examples":
        return examples(argv[2])
    spec_path, log_path = argv[1], argv[2]
    with open(spec_path) as f:
        base = yaml.load(f, Loader=Loader)
    patched = patch(base)
    checkers = {"berlin": Checker(base)}
    with open(spec_path) as f:
        geo = yaml.load(f, Loader=Loader)
    patch(geo)
    georgian(geo)
    checkers["georgia"] = Checker(geo)
    types, skipped = {}, 0
    with open(log_path) as f:
        for line in f:
            req = json.loads(line)
            if not req["path"].startswith("/v1/") or req.get("listener", "bank") != "bank":
                skipped += 1
                continue
            key, errs = checkers[req["variant"]].check(req)
            key = req["variant"] + " " + (key or req["method"] + " " + req["path"])
            t = types.setdefault(key, {"count": 0, "valid": True, "errors": []})
            t["count"] += 1
            if errs:
                t["valid"] = False
                for e in errs:
                    if e not in t["errors"] and len(t["errors"]) < 5:
                        t["errors"].append(e)
    valid = sum(1 for t in types.values() if t["valid"])
    json.dump({"types": types, "skipped": skipped, "valid": valid, "total": len(types),
               "patched_oneof": patched}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv)
