#!/usr/bin/python3
"""tests/test_openapi.py: the daemon's answers match proto/openapi.yaml.

Starts `orthod serve` (real binary, real model, API keys on) on 127.0.0.1 and a free port,
then for every documented operation: the status it answers must be documented for that
operation, and a JSON body must match the documented schema (types, required fields, enums,
nullable, $ref). Also: the unauthenticated answer of secured operations (401), the wrong-
method answer of every path (405 + Allow), an unknown id (404), an unknown path (Error), and
that every route in the daemon's route table (server/*.c) is documented.

Usage: test_openapi.py PATH/TO/orthod PATH/TO/openapi.yaml
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

DEADLINE_S = 60.0
KEY = "openapi-test-key-0123456789abcdef"


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        cur = spec
        for part in ref[2:].split("/"):
            cur = cur[part]
        node = cur
    return node


def validate(spec, schema, value, where):
    """Minimal OpenAPI 3.0 schema check: type, nullable, enum, required, properties, items."""
    schema = resolve(spec, schema)
    if value is None:
        if schema.get("nullable"):
            return
        fail(f"{where}: null where {schema.get('type')} is required")
    t = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if t and not checks[t](value):
        fail(f"{where}: {value!r} is not {t}")
    if "enum" in schema and value not in schema["enum"]:
        fail(f"{where}: {value!r} not in {schema['enum']}")
    if t == "object":
        for name in schema.get("required", []):
            if name not in value:
                fail(f"{where}: required field '{name}' missing in {value!r}")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                validate(spec, sub, value[name], f"{where}.{name}")
    if t == "array" and "items" in schema:
        for i, item in enumerate(value):
            validate(spec, schema["items"], item, f"{where}[{i}]")


def request(port, method, path, key=None, body=None, ctype=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=body)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=DEADLINE_S) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def check_response(spec, op, where, status, headers, body):
    responses = op["responses"]
    if str(status) not in responses:
        fail(f"{where}: answered {status}, documented: {sorted(responses)}")
    resp = resolve(spec, responses[str(status)])
    if "X-Request-Id" not in headers:
        fail(f"{where}: no X-Request-Id header")
    content = resp.get("content", {})
    if "application/json" in content:
        if not headers.get("Content-Type", "").startswith("application/json"):
            fail(f"{where}: Content-Type {headers.get('Content-Type')} for a JSON response")
        try:
            value = json.loads(body)
        except ValueError:
            fail(f"{where}: body is not JSON: {body[:200]!r}")
        validate(spec, content["application/json"]["schema"], value, where)
    elif "text/plain" in content:
        if not headers.get("Content-Type", "").startswith("text/plain"):
            fail(f"{where}: Content-Type {headers.get('Content-Type')} for a text response")
    print(f"ok: {where} -> {status}")


def start_daemon(orthod, tmp):
    keys = os.path.join(tmp, "keys")
    with open(keys, "w") as f:
        f.write(f"{KEY} admin\n")
    shared = os.environ.get("ORTHOD_SHARED") or os.path.join(
        os.environ.get("ORTHOD_SOURCE_ROOT", "."), "..", "shared")
    model = os.path.join(shared, "models", "stories260K.gguf")
    if not os.path.exists(model):
        print(f"{model} not found (set ORTHOD_SHARED); skipping")
        sys.exit(77)
    log_path = os.path.join(tmp, "orthod.log")
    log = open(log_path, "w")
    p = subprocess.Popen([orthod, "serve", "--model", model, "--host", "127.0.0.1", "--port", "0",
                          "--api-key-file", keys, "--model-alias", "stories"],
                         stdout=log, stderr=log)
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        m = re.search(r"msg=listening .* port=(\d+)", open(log_path).read())
        if m:
            return p, int(m.group(1)), log_path
        if p.poll() is not None:
            fail(f"orthod exited with {p.returncode}:\n{open(log_path).read()}")
        time.sleep(0.02)
    p.kill()
    fail("orthod did not start listening")


def main():
    orthod, spec_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = yaml.safe_load(f)
    root = os.path.dirname(os.path.dirname(os.path.abspath(spec_path)))

    # every route in the daemon's table is documented
    routes = set()
    for name in os.listdir(os.path.join(root, "server")):
        if name.endswith(".c"):
            text = open(os.path.join(root, "server", name)).read()
            routes.update(re.findall(r'\{\s*"(/[^"]*)",\s*SRV_[A-Z]', text))
    if not routes:
        fail("found no route table in server/*.c")
    for r in sorted(routes):
        if r not in spec["paths"]:
            fail(f"route {r} is served but not documented in {spec_path}")

    with tempfile.TemporaryDirectory() as tmp:
        p, port, log_path = start_daemon(orthod, tmp)
        try:
            end = time.monotonic() + DEADLINE_S
            while request(port, "GET", "/ready")[0] != 200:
                if time.monotonic() > end:
                    fail("never ready")
                time.sleep(0.025)
            for path, item in spec["paths"].items():
                for method, op in item.items():
                    if method not in ("get", "post", "put", "delete", "patch"):
                        continue
                    params = {prm["name"]: prm.get("example", "x")
                              for prm in op.get("parameters", []) if prm["in"] == "path"}
                    url = path.format(**params)
                    secured = bool(op.get("security"))
                    where = f"{method.upper()} {path}"
                    if secured:
                        st, h, b = request(port, method.upper(), url)
                        if st != 401:
                            fail(f"{where} without a key answered {st}")
                        check_response(spec, op, where + " (no key)", st, h, b)
                    st, h, b = request(port, method.upper(), url, KEY if secured else None)
                    if st >= 300:
                        fail(f"{where} answered {st}: {b[:300]!r}")
                    check_response(spec, op, where, st, h, b)
                    if params:
                        bad = path.format(**{k: "no-such-" + k for k in params})
                        st, h, b = request(port, method.upper(), bad, KEY)
                        check_response(spec, op, where + " (unknown id)", st, h, b)
                    # a method the path does not have
                    other = next(m for m in ("delete", "put", "post") if m not in item)
                    st, h, b = request(port, other.upper(), url, KEY, b"{}", "application/json")
                    if st != 405 or "Allow" not in h:
                        fail(f"{other.upper()} {path}: {st}, Allow={h.get('Allow')}")
                    check_response(spec, op, f"{other.upper()} {path}", st, h, b)
            # a bad body on a documented route
            st, h, b = request(port, "POST", "/v1/models", KEY, b"{oops", "application/json")
            check_response(spec, spec["paths"]["/v1/models"]["get"], "POST /v1/models (bad JSON)",
                           st, h, b)
            # an undocumented path answers the documented Error shape
            st, h, b = request(port, "GET", "/no/such/path")
            if st != 404:
                fail(f"/no/such/path answered {st}")
            validate(spec, {"$ref": "#/components/schemas/Error"}, json.loads(b), "GET /no/such/path")
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(DEADLINE_S)
            except subprocess.TimeoutExpired:
                p.kill()
                fail("orthod did not exit after SIGTERM")
            if rc != 0:
                print(open(log_path).read())
                fail(f"orthod exited with {rc} after SIGTERM")
    print("all OpenAPI checks passed")


if __name__ == "__main__":
    main()
