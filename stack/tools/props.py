#!/usr/bin/env python3
"""Render a Kafka Connect .properties file with ${NAME} placeholders substituted from the environment.

Contract: the result is identical to what stack/connect/Launcher.java builds from the same file (java.util.Properties
parsing, then substitution in values; a missing variable is an error). test_props.py checks the two agree. This file
uses the standard library only: the docker-compose registration job runs it in a bare Python image.

    props.py json FILE                 print the substituted config as a sorted JSON object
    props.py register FILE CONNECT_URL PUT it to Kafka Connect's REST API (create or update), retrying until Connect
                                       answers; idempotent.
"""
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


class ConfigError(Exception):
    pass


def _logical_lines(text):
    """Yields java.util.Properties logical lines: comments dropped, backslash-continued lines joined."""
    pending = None
    for raw in text.splitlines():
        # Java strips leading whitespace from every natural line, continuation lines included.
        line = raw.lstrip(" \t\f")
        if pending is None and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        continued = trailing % 2 == 1
        if continued:
            line = line[:-1]
        pending = line if pending is None else pending + line
        if not continued:
            yield pending
            pending = None
    if pending is not None:
        yield pending


def _unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c != "\\" or i + 1 >= len(s):
            out.append(c)
            i += 1
            continue
        n = s[i + 1]
        if n == "u" and i + 6 <= len(s):
            out.append(chr(int(s[i + 2 : i + 6], 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(n, n))
        i += 2
    return "".join(out)


def _split(line):
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c in "=: \t\f":
            break
        i += 1
    key = line[:i]
    while i < n and line[i] in " \t\f":
        i += 1
    if i < n and line[i] in "=:":
        i += 1
        while i < n and line[i] in " \t\f":
            i += 1
    return _unescape(key), _unescape(line[i:])


def parse(text):
    props = {}
    for line in _logical_lines(text):
        key, value = _split(line)
        props[key] = value
    return props


def substitute(props, env, source="<config>"):
    def one(key, value):
        def repl(m):
            name = m.group(1)
            if name not in env:
                raise ConfigError(f"{source}: {key} needs environment variable {name}, which is not set")
            return env[name]

        return PLACEHOLDER.sub(repl, value)

    return {k: one(k, v) for k, v in props.items()}


def load(path, env=None):
    with open(path, encoding="utf-8") as f:
        return substitute(parse(f.read()), os.environ if env is None else env, path)


def register(path, connect_url, timeout_s=300.0):
    config = load(path)
    name = config.get("name")
    if not name:
        raise ConfigError(f"{path}: missing `name`")
    url = f"{connect_url.rstrip('/')}/connectors/{name}/config"
    body = json.dumps(config).encode()
    deadline = time.monotonic() + timeout_s
    while True:
        req = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                print(f"registered {name}: HTTP {resp.status}")
                return
        except urllib.error.HTTPError as e:
            # 409: Connect is rebalancing; anything else 4xx is a bad config and retrying will not fix it.
            detail = e.read().decode(errors="replace")
            if e.code != 409 and 400 <= e.code < 500:
                raise ConfigError(f"Connect rejected {name}: HTTP {e.code}: {detail}") from e
            err = f"HTTP {e.code}: {detail}"
        except (urllib.error.URLError, OSError) as e:
            err = str(e)
        if time.monotonic() > deadline:
            raise ConfigError(f"Connect at {connect_url} did not accept {name} within {timeout_s}s: {err}")
        print(f"waiting for Connect ({err})", file=sys.stderr)
        time.sleep(3)


def main(argv):
    try:
        if len(argv) == 3 and argv[1] == "json":
            print(json.dumps(dict(sorted(load(argv[2]).items())), indent=2))
        elif len(argv) == 4 and argv[1] == "register":
            register(argv[2], argv[3])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
