"""Structure of the container deployment: docker-compose.yml, Dockerfile, .dockerignore, deploy/temporal/.

CI has no Docker engine, so nothing here starts a container. These tests pin down what the deployment promises
(pinned images, localhost-only ports, Postgres persistence, the worker wiring, the five search attributes) and run
the search-attribute registration script against a stub `temporal` CLI.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
REGISTER_SCRIPT = ROOT / "deploy" / "temporal" / "register-search-attributes.sh"

SEARCH_ATTRIBUTES = {
    "DrPlan": "Keyword",
    "DrMode": "Keyword",
    "DrPhase": "Keyword",
    "DrStatus": "Keyword",
    "DrInitiator": "Keyword",
}
INIT_SERVICE = "temporal-search-attributes"
PACKAGES = ("contracts", "workflows", "activities", "workers", "plans", "sandbox", "drctl")


# ---------------------------------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = YAML(typ="safe", pure=True).load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either compose form (mapping or list of KEY=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def depends_on(service: dict[str, Any]) -> dict[str, str | None]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps)
    return {name: (spec or {}).get("condition") for name, spec in deps.items()}


def host_and_port(address: str) -> tuple[str, str]:
    address = re.sub(r"^[a-z]+://", "", address).rstrip("/")
    host, _, port = address.rpartition(":")
    return host, port


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """`name[:tag][@digest]` -> (name, tag, digest); a registry's `host:port/` is not mistaken for a tag."""
    ref, _, digest = ref.partition("@")
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = ref.rsplit(":", 1)
        return name, tag, digest or None
    return ref, None, digest or None


def image_is_pinned(ref: str) -> bool:
    _, tag, digest = split_image(ref)
    if digest:
        return bool(re.fullmatch(r"sha256:[0-9a-f]{64}", digest))
    return tag is not None and tag != "latest" and "$" not in tag and re.search(r"\d", tag) is not None


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with comments dropped and line continuations joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


# ---------------------------------------------------------------------------------------------------- compose


def test_all_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert {"postgresql", "temporal", "temporal-ui", "worker", "sandbox", INIT_SERVICE} <= set(services)


def test_every_service_has_a_pinned_image_or_a_build(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name} has neither image nor build"
        if "image" in service:
            assert image_is_pinned(str(service["image"])), f"{name}: image {service['image']!r} is not pinned"


def test_no_latest_tag_anywhere() -> None:
    for path in (COMPOSE_FILE, DOCKERFILE):
        assert not re.search(r":latest\b", path.read_text()), f"{path.name} mentions a :latest tag"


@pytest.mark.parametrize(
    ("ref", "pinned"),
    [
        ("postgres:16.8-bookworm", True),
        ("temporalio/ui:2.34.0", True),
        ("registry.local:5000/team/app:1.2", True),
        ("python@sha256:" + "a" * 64, True),
        ("postgres", False),
        ("postgres:latest", False),
        ("registry.local:5000/team/app", False),
        ("temporalio/ui:${UI_VERSION}", False),
        ("temporalio/ui:stable", False),
    ],
)
def test_image_pin_check_itself(ref: str, pinned: bool) -> None:
    assert image_is_pinned(ref) is pinned


def test_published_ports_bind_localhost_only(services: dict[str, dict[str, Any]]) -> None:
    published = 0
    for name, service in services.items():
        for port in service.get("ports") or []:
            published += 1
            if isinstance(port, dict):  # long syntax
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port} is not bound to 127.0.0.1"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port!r} is not bound to 127.0.0.1"
                assert str(port).count(":") == 2, f"{name}: {port!r} must be 127.0.0.1:HOST:CONTAINER"
    assert published >= 3


def test_expected_ports_are_published(services: dict[str, dict[str, Any]]) -> None:
    assert "127.0.0.1:7233:7233" in services["temporal"]["ports"]
    assert "127.0.0.1:8233:8080" in services["temporal-ui"]["ports"]
    assert "127.0.0.1:4566:4566" in services["sandbox"]["ports"]
    assert not services["postgresql"].get("ports"), "the database must not be published"


def test_postgresql_is_persistent_and_healthchecked(compose: dict[str, Any], services: dict[str, Any]) -> None:
    pg = services["postgresql"]
    assert split_image(pg["image"])[0] in ("postgres", "docker.io/library/postgres")
    named = [v.split(":", 1)[0] for v in pg.get("volumes") or [] if isinstance(v, str) and ":" in v]
    assert any(v in (compose.get("volumes") or {}) for v in named), "postgresql data is not on a named volume"
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    test = pg["healthcheck"]["test"]
    assert "pg_isready" in (test if isinstance(test, str) else " ".join(test))


def test_temporal_uses_postgres_persistence(services: dict[str, dict[str, Any]]) -> None:
    temporal = services["temporal"]
    assert split_image(temporal["image"])[0] == "temporalio/auto-setup"
    env = env_of(temporal)
    assert env["DB"] in ("postgres12", "postgres12_pgx")
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert env["POSTGRES_USER"] == env_of(services["postgresql"])["POSTGRES_USER"]
    assert env["POSTGRES_PWD"] == env_of(services["postgresql"])["POSTGRES_PASSWORD"]
    assert depends_on(temporal) == {"postgresql": "service_healthy"}
    assert "healthcheck" in temporal


def test_temporal_dynamic_config_is_mounted(services: dict[str, dict[str, Any]]) -> None:
    temporal = services["temporal"]
    config_path = env_of(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    for volume in temporal.get("volumes") or []:
        source, target = str(volume).split(":")[:2]
        if config_path.startswith(target.rstrip("/") + "/"):
            local = (ROOT / source).resolve() / config_path[len(target.rstrip("/")) + 1 :]
            break
    else:
        pytest.fail(f"{config_path} is not inside any volume mounted into temporal")
    assert local.is_file(), f"{local} does not exist"
    assert isinstance(YAML(typ="safe", pure=True).load(local.read_text()), dict)


def test_ui_points_at_temporal(services: dict[str, dict[str, Any]]) -> None:
    ui = services["temporal-ui"]
    assert split_image(ui["image"])[0] == "temporalio/ui"
    assert host_and_port(env_of(ui)["TEMPORAL_ADDRESS"]) == ("temporal", "7233")


def test_worker_is_built_from_the_repo_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    for name in ("worker", "sandbox"):
        build = services[name]["build"]
        context, dockerfile = (build, "Dockerfile") if isinstance(build, str) else (
            build.get("context", "."), build.get("dockerfile", "Dockerfile"))
        assert (ROOT / context).resolve() == ROOT, f"{name} is not built from the repo root"
        assert (ROOT / context / dockerfile).resolve() == DOCKERFILE
    assert command_of(services["worker"]) == ["worker"]


def test_worker_environment(services: dict[str, dict[str, Any]]) -> None:
    env = env_of(services["worker"])
    assert host_and_port(env["TEMPORAL_ADDRESS"]) == ("temporal", "7233")
    assert env["TEMPORAL_NAMESPACE"] == env_of(services[INIT_SERVICE])["TEMPORAL_NAMESPACE"] == "default"
    assert env["AWS_ENDPOINT_URL"].startswith("http://")
    assert host_and_port(env["AWS_ENDPOINT_URL"]) == ("sandbox", "4566")
    assert env["AWS_DEFAULT_REGION"]
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
    # Tokens are verified in the workflow: the worker must know whom to trust.
    mounts = {v.split(":")[1]: v for v in services["worker"].get("volumes", [])}
    assert env["DR_AUTH_TRUST_FILE"].startswith("/etc/dr-auth/") and mounts["/etc/dr-auth"].endswith(":ro")
    # Payloads are sealed: the key file comes read-only beside the trust file (the worker refuses to start without).
    assert env["DR_PAYLOAD_KEYS_FILE"] == "/etc/dr-auth/payload-keys.json"


def test_worker_starts_after_its_dependencies(services: dict[str, dict[str, Any]]) -> None:
    deps = depends_on(services["worker"])
    assert deps.get("temporal") == "service_healthy"
    assert deps.get(INIT_SERVICE) == "service_completed_successfully"
    assert deps.get("sandbox") == "service_healthy"
    assert "healthcheck" in services["sandbox"]


def test_sandbox_serves_on_all_interfaces_inside_its_container(services: dict[str, dict[str, Any]]) -> None:
    command = command_of(services["sandbox"])
    assert command[:2] == ["sandbox", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "4566"


def test_every_depends_on_target_exists(services: dict[str, dict[str, Any]]) -> None:
    conditions = {None, "service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            assert target in services, f"{name} depends on undefined service {target}"
            assert condition in conditions, f"{name}: unknown condition {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} healthy; it has no healthcheck"


def test_init_service_registers_exactly_the_five_keyword_attributes(services: dict[str, dict[str, Any]]) -> None:
    init = services[INIT_SERVICE]
    assert split_image(init["image"])[0] == "temporalio/admin-tools"
    env = env_of(init)
    assert host_and_port(env["TEMPORAL_ADDRESS"]) == ("temporal", "7233")
    pairs = [pair.split("=", 1) for pair in env["DR_SEARCH_ATTRIBUTES"].split()]
    assert len(pairs) == len(SEARCH_ATTRIBUTES), "duplicate or extra search attributes"
    assert dict(pairs) == SEARCH_ATTRIBUTES
    assert depends_on(init) == {"temporal": "service_healthy"}


def test_init_service_runs_the_repo_script(services: dict[str, dict[str, Any]]) -> None:
    init = services[INIT_SERVICE]
    entrypoint = init["entrypoint"]
    entrypoint = shlex.split(entrypoint) if isinstance(entrypoint, str) else entrypoint
    assert entrypoint[0] in ("/bin/sh", "sh")
    mounts = {}
    for volume in init["volumes"]:
        source, target = str(volume).split(":")[:2]
        mounts[target] = (ROOT / source).resolve()
    assert mounts.get(entrypoint[1]) == REGISTER_SCRIPT


def test_deploy_readme_lists_the_images_in_use(services: dict[str, dict[str, Any]]) -> None:
    readme = (ROOT / "deploy" / "README.md").read_text()
    for name, service in services.items():
        if "image" in service:
            assert f"`{service['image']}`" in readme, f"deploy/README.md does not mention {service['image']} ({name})"


# ---------------------------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_images_are_pinned() -> None:
    froms = [args for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert froms, "no FROM"
    stages: set[str] = set()
    for args in froms:
        parts = [p for p in args.split() if not p.startswith("--")]
        image = parts[0]
        if image not in stages:
            assert image_is_pinned(image), f"base image {image!r} is not pinned"
            assert re.match(r"python:3\.11\.\d+-slim", image), f"{image!r} is not a pinned python:3.11 slim image"
        if len(parts) == 3 and parts[1].upper() == "AS":
            stages.add(parts[2])


def test_dockerfile_runtime_contract() -> None:
    instructions = dockerfile_instructions()
    last_stage = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    final = instructions[last_stage:]
    entrypoints = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    assert entrypoints and entrypoints[-1] == '["drctl"]'
    cmds = [args for keyword, args in final if keyword == "CMD"]
    assert cmds and cmds[-1] == '["worker"]'
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    envs = " ".join(args for keyword, args in final if keyword == "ENV")
    assert re.search(r"PYTHONUNBUFFERED[= ]1", envs)


def test_dockerfile_installs_the_package_with_the_sandbox_extra() -> None:
    instructions = dockerfile_instructions()
    copied = " ".join(args for keyword, args in instructions if keyword == "COPY")
    for needed in ("pyproject.toml", "uv.lock", *PACKAGES):
        assert re.search(rf"(^|\s){re.escape(needed)}/?(\s|$)", copied), f"{needed} is not copied into the image"
    runs = " ".join(args for keyword, args in instructions if keyword == "RUN")
    # Installed from the lock, never resolved afresh at build time.
    assert re.search(r"uv sync --locked [^&]*--extra sandbox", runs)
    assert "pip install --require-hashes" in runs


def test_dockerfile_packages_match_pyproject() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"include\s*=\s*\[([^\]]*)\]", pyproject)
    assert include, "pyproject.toml has no packages include list"
    declared = {name.rstrip("*") for name in re.findall(r'"([^"]+)"', include.group(1))}
    assert declared == set(PACKAGES), "update the Dockerfile, .dockerignore and PACKAGES with pyproject.toml"


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches everything below a matched dir."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            matches = any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern[3:]) for c in candidates)
        else:
            matches = any(fnmatch.fnmatch(c, pattern) for c in candidates)
        if matches:
            ignored = not negated
    return ignored


def test_dockerignore_keeps_the_sources_and_drops_the_rest() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    for kept in ("pyproject.toml", "drctl/cli.py", "plans/examples/x.yaml", "sandbox/scenarios/x.yaml",
                 *(f"{p}/__init__.py" for p in PACKAGES)):
        assert not _docker_ignored(kept, patterns), f"{kept} would be left out of the build context"
    for dropped in (".git/HEAD", ".venv/bin/python", "tests/test_compose.py", ".state/x.json",
                    "drctl/__pycache__/cli.cpython-311.pyc", "dr_orchestrator.egg-info/PKG-INFO"):
        assert _docker_ignored(dropped, patterns), f"{dropped} would be sent to the Docker daemon"


# ---------------------------------------------------------------------------------------------------- the script


STUB = textwrap.dedent(
    """\
    #!/bin/sh
    # A fake `temporal` CLI: logs its arguments, answers according to $STUB_MODE.
    echo "$*" >> "$STUB_LOG"
    case "$*" in
        "operator cluster health"*) echo SERVING; exit 0 ;;
        "operator namespace describe"*)
            if [ "$STUB_MODE" = slow-namespace ]; then
                n=$(grep -c "namespace describe" "$STUB_LOG")
                [ "$n" -ge 3 ] || { echo "Namespace default is not found." >&2; exit 1; }
            fi
            echo "NamespaceInfo.Name default"; exit 0 ;;
        "operator search-attribute create"*)
            case "$STUB_MODE" in
                exists) echo "Error: unable to add search attributes: Search attribute X already exists." >&2; exit 1 ;;
                wrong-type) echo "Error: search attribute DrPlan already exists and has different type Text" >&2; exit 1 ;;
                down) echo "Error: failed reaching server: connection refused" >&2; exit 1 ;;
            esac
            echo "Search attributes have been added"; exit 0 ;;
    esac
    echo "stub: unexpected call: $*" >&2
    exit 64
    """
)


@pytest.fixture
def run_script(tmp_path: Path, services: dict[str, dict[str, Any]]):
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no POSIX shell")
    stub = tmp_path / "bin" / "temporal"
    stub.parent.mkdir()
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    compose_env = env_of(services[INIT_SERVICE])

    def run(mode: str = "ok", **overrides: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        log.write_text("")
        env = {
            "PATH": f"{stub.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "STUB_LOG": str(log),
            "STUB_MODE": mode,
            "DR_INIT_ATTEMPTS": "4",
            "DR_INIT_SLEEP_SECONDS": "0",
            **{k: compose_env[k] for k in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "DR_SEARCH_ATTRIBUTES")},
            **overrides,
        }
        env = {k: v for k, v in env.items() if v is not None}
        proc = subprocess.run([sh, str(REGISTER_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
        return proc, log.read_text().splitlines()

    return run


def _created(calls: list[str]) -> dict[str, str]:
    created = {}
    for call in calls:
        if call.startswith("operator search-attribute create"):
            args = call.split()
            assert args[args.index("--namespace") + 1] == "default"
            assert args[args.index("--address") + 1] == "temporal:7233"
            created[args[args.index("--name") + 1]] = args[args.index("--type") + 1]
    return created


def test_script_registers_each_attribute_once(run_script) -> None:
    proc, calls = run_script("ok")
    assert proc.returncode == 0, proc.stderr
    assert _created(calls) == SEARCH_ATTRIBUTES
    assert sum(c.startswith("operator search-attribute create") for c in calls) == len(SEARCH_ATTRIBUTES)
    assert calls[0].startswith("operator cluster health")


def test_script_tolerates_already_registered_attributes(run_script) -> None:
    proc, calls = run_script("exists")
    assert proc.returncode == 0, proc.stderr
    assert set(_created(calls)) == set(SEARCH_ATTRIBUTES)


def test_script_waits_for_the_namespace(run_script) -> None:
    proc, calls = run_script("slow-namespace")
    assert proc.returncode == 0, proc.stderr
    describes = [i for i, c in enumerate(calls) if c.startswith("operator namespace describe")]
    first_create = next(i for i, c in enumerate(calls) if c.startswith("operator search-attribute create"))
    assert len(describes) == 3 and describes[-1] < first_create


def test_script_fails_on_a_type_conflict(run_script) -> None:
    proc, calls = run_script("wrong-type")
    assert proc.returncode != 0
    assert "different type" in proc.stderr
    assert len(_created(calls)) == 1, "it must stop at the first conflict, not retry"


def test_script_gives_up_when_the_server_keeps_failing(run_script) -> None:
    proc, calls = run_script("down")
    assert proc.returncode != 0
    assert sum(c.startswith("operator search-attribute create") for c in calls) == 4  # DR_INIT_ATTEMPTS


@pytest.mark.parametrize("bad", ["", "DrPlan", "DrPlan=Keyword =Keyword", "DrPlan= DrMode=Keyword"])
def test_script_rejects_a_bad_attribute_list_before_calling_the_server(run_script, bad: str) -> None:
    proc, calls = run_script("ok", DR_SEARCH_ATTRIBUTES=bad)
    assert proc.returncode != 0
    assert calls == []
