"""props.py (used by docker-compose) must read a .properties file exactly like Launcher.java (native stack).

Runs the compiled launcher's --render mode (stack/bootstrap.sh launcher) and compares its JSON with props.py's.
Run: <venv>/bin/python -m pytest stack/tools
"""
import json
import os
import pathlib
import subprocess

import pytest

import props

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("LEDGERSTREAM_CACHE", pathlib.Path.home() / ".cache/ledgerstream"))
LAUNCHER = CACHE / "connect-launcher"

ENV = {
    "LS_PG_HOST": "db.internal",
    "LS_PG_PORT": "5432",
    "LS_PG_USER": "cdc",
    "LS_PG_PASSWORD": r"p\a:s=s w#rd${NOT_A_VAR}",
    "LS_PG_DB": "fintech",
    "LS_PARTITIONS": "8",
}

TRICKY = r"""
# comment
! bang comment
plain=value
spaced   =   padded value  
colon:separated
whitespace separated
escaped\ key\=x=v
backslashes=fintech\\.public\\.users
unicode=caf\u00e9
tabs=a\tb
continued=one, \
          two, \
    three
odd\\
even=\\\\
empty=
sub=${LS_PG_HOST}:${LS_PG_PORT}
dup=first
dup=second
"""


def java_render(path):
    if not (LAUNCHER / "classes").is_dir():
        pytest.fail(f"{LAUNCHER} missing: run stack/bootstrap.sh launcher first")
    cp = f"{LAUNCHER / 'classes'}:{(LAUNCHER / 'classpath').read_text().strip()}"
    out = subprocess.run(
        ["java", "-cp", cp, "ledgerstream.connect.Launcher", "--render", str(path)],
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("name", ["tricky", "connector", "worker"])
def test_python_and_java_agree(tmp_path, name):
    if name == "tricky":
        path = tmp_path / "tricky.properties"
        path.write_text(TRICKY)
    else:
        path = ROOT / "stack/debezium" / f"{name}.properties"
    env = {**ENV, "LS_KAFKA_BOOTSTRAP": "k:1", "LS_CONNECT_OFFSETS": "/tmp/o"}
    os.environ.update(env)
    try:
        assert props.load(str(path), env) == java_render(path)
    finally:
        for k in env:
            os.environ.pop(k, None)


def test_connector_values():
    c = props.load(str(ROOT / "stack/debezium/connector.properties"), ENV)
    assert c["predicates.isUsers.pattern"] == r"fintech\.public\.users"
    assert c["predicates.isWalletsOrTx.pattern"] == r"fintech\.public\.(wallets|transactions)"
    assert c["transforms.userKeyOther.type"] == "org.apache.kafka.connect.transforms.ExtractField$Key"
    assert c["database.password"] == ENV["LS_PG_PASSWORD"]
    assert c["topic.creation.default.partitions"] == "8"


def test_missing_variable_is_an_error():
    with pytest.raises(props.ConfigError, match="LS_PG_HOST"):
        props.substitute({"database.hostname": "${LS_PG_HOST}"}, {})


def test_tricky_parse():
    p = props.substitute(props.parse(TRICKY), ENV)
    assert p == {
        "plain": "value",
        "spaced": "padded value  ",
        "colon": "separated",
        "whitespace": "separated",
        "escaped key=x": "v",
        "backslashes": r"fintech\.public\.users",
        "unicode": "café",
        "tabs": "a\tb",
        "continued": "one, two, three",
        "odd\\": "",
        "even": "\\\\",
        "empty": "",
        "sub": "db.internal:5432",
        "dup": "second",
    }
