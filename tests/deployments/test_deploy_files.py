"""Static checks of the production-shaped stack: compose.yaml, the Dockerfile, k8s, CI.

No Docker engine or cluster is needed: the files are parsed and cross-checked against each
other, the Settings object and the typer app. Every checker is also fed a broken copy, so a
checker that stopped looking would fail here.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer.main
import yaml

from crimeflow.cli.main import app
from crimeflow.contract.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "deployments" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
POSTGRES_INIT = ROOT / "deployments" / "postgres" / "init.sh"
K8S = ROOT / "deployments" / "k8s"
CI = ROOT / ".github" / "workflows" / "ci.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PREFECT_YAML = ROOT / "prefect.yaml"
WORK_POOL = "crimeflow-process"

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|(^|_)KEY$")
# ${VAR}, ${VAR:?message}, ${VAR?message}, ${VAR:-default}, ${VAR-default}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}")
URL_CREDENTIALS = re.compile(r"://(?P<user>[^:/@\s\"']+):(?P<password>\$\{[^}]*\}|[^@\s\"']*)@")
PLACEHOLDER = re.compile(r"^<[^<>]+>$")
SHELL_SEPARATORS = {"&&", "||", ";", "|", "exec", "then", "do", "else"}
# Options that point an installer at a particular package index (and so name its host): the
# image and the stack install by package name through the installer's own configuration.
INDEX_OPTIONS = ("index-url", "extra-index-url", "trusted-host", "find-links", "registry=")


# --- loading --------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    """One YAML document."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a (multi-document) YAML file."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def compose_file() -> dict[str, Any]:
    """compose.yaml, parsed (anchors and merge keys resolved)."""
    return load_yaml(COMPOSE)


def k8s_documents() -> list[dict[str, Any]]:
    """Every manifest the kustomization lists, in order."""
    kustomization = load_yaml(K8S / "kustomization.yaml")
    return [doc for name in kustomization["resources"] for doc in load_yaml_documents(K8S / name)]


def k8s_secret_templates() -> list[dict[str, Any]]:
    """The Secrets of secret.template.yaml (applied by hand, not by the kustomization)."""
    return load_yaml_documents(K8S / "secret.template.yaml")


# --- compose: the service graph ---------------------------------------------------------------


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """The service's dependencies and their conditions (the short list form means started)."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def is_one_shot(service: Mapping[str, Any]) -> bool:
    """A job that runs to completion: `restart: "no"` (YAML 1.1 also reads a bare no as False)."""
    return service.get("restart") in ("no", False)


def has_healthcheck(service: Mapping[str, Any]) -> bool:
    """Whether compose itself declares an enabled healthcheck with a test."""
    check = service.get("healthcheck")
    return bool(check) and not check.get("disable", False) and bool(check.get("test"))


def compose_graph_errors(compose: Mapping[str, Any]) -> list[str]:
    """Everything wrong with the service graph: targets, conditions, healthchecks, cycles."""
    services: Mapping[str, Any] = compose.get("services") or {}
    errors: list[str] = []
    for name, service in services.items():
        if not is_one_shot(service) and not has_healthcheck(service):
            errors.append(f"{name}: long-running service without a healthcheck")
        for target, condition in depends_on(service).items():
            if target not in services:
                errors.append(f"{name}: depends on unknown service {target!r}")
                continue
            if condition == "service_healthy" and not has_healthcheck(services[target]):
                errors.append(f"{name}: waits for {target} to be healthy, which has no healthcheck")
            elif condition == "service_completed_successfully" and not is_one_shot(
                services[target]
            ):
                errors.append(f"{name}: waits for {target} to complete, which is long-running")
            elif condition not in (
                "service_healthy",
                "service_completed_successfully",
                "service_started",
            ):
                errors.append(f"{name}: unknown condition {condition!r} on {target}")
    errors.extend(
        f"dependency cycle: {' -> '.join(cycle)}" for cycle in dependency_cycles(services)
    )
    return errors


def dependency_cycles(services: Mapping[str, Any]) -> list[list[str]]:
    """Cycles of depends_on (depth-first search; each cycle reported once per entry point)."""
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in depends_on(services[name]):
            if target not in services:
                continue
            if state.get(target) == "open":
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = "done"

    for name in services:
        if name not in state:
            visit(name, [name])
    return cycles


# --- environment names and secrets ------------------------------------------------------------


def settings_env_names() -> set[str]:
    """Every env name the Settings object reads."""
    return set(Settings.env_names())


def unknown_crimeflow_names(names: Iterable[str]) -> list[str]:
    """The CRIMEFLOW_* names that are not settings (a typo is silently ignored at run time)."""
    known = settings_env_names()
    return sorted({n for n in names if n.startswith("CRIMEFLOW_") and n not in known})


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """A compose service's environment as a mapping (list `K=V` form too)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


def dotenv_names(text: str) -> list[str]:
    """Variable names assigned in a dotenv file."""
    names = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            names.append(line.split("=", 1)[0].removeprefix("export ").strip())
    return names


def is_interpolated_secret(value: str) -> bool:
    """Empty, `$$VAR` (container-side), or exactly one ${VAR...} whose default is empty."""
    if value == "" or re.fullmatch(r"\$\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", value):
        return True
    match = INTERPOLATION.fullmatch(value)
    if not match:
        return False
    return match["op"] is None or "?" in match["op"] or match["arg"] == ""


def strings_in(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string inside a parsed YAML tree, with a dotted location."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from strings_in(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings_in(value, f"{where}[{index}]")
    elif isinstance(node, str):
        yield where, node


def url_password_errors(node: Any, allow_placeholders: bool = False) -> list[str]:
    """URLs with a literal password (`scheme://user:secret@host`) anywhere in the tree."""
    errors = []
    for where, text in strings_in(node):
        for match in URL_CREDENTIALS.finditer(text):
            password = match["password"]
            if password.startswith(("${", "$$")):
                continue
            if allow_placeholders and PLACEHOLDER.match(password):
                continue
            errors.append(f"{where}: URL with a literal password")
    return errors


def literal_secret_errors(env: Mapping[str, str], where: str) -> list[str]:
    """Secret-looking variables whose value is written out instead of interpolated."""
    return [
        f"{where}: {name} is a literal, not ${{VAR}}"
        for name, value in env.items()
        if SECRET_NAME.search(name) and not is_interpolated_secret(value)
    ]


def compose_secret_errors(compose: Mapping[str, Any]) -> list[str]:
    """Literal secrets anywhere in compose: env values, URLs in env or commands."""
    errors = url_password_errors(compose)
    for name, service in (compose.get("services") or {}).items():
        errors += literal_secret_errors(environment_of(service), name)
    return errors


def required_variables(compose: Mapping[str, Any]) -> set[str]:
    """The ${VAR} names compose needs from .env (those without a default; comments ignored)."""
    return {
        m["name"]
        for _, text in strings_in(compose)
        for m in INTERPOLATION.finditer(text)
        if m["op"] is None or "?" in m["op"]
    }


# --- compose: S3 server, keys, Redis, public URLs, images ------------------------------------


def interpolated(value: str) -> set[str]:
    """The .env variables a compose value interpolates (`${VAR...}`)."""
    return {m["name"] for m in INTERPOLATION.finditer(value)}


def s3_key_holders(compose: Mapping[str, Any]) -> dict[str, set[str]]:
    """For every .env variable holding an S3 key (S3_*_KEY), the services whose env gets it."""
    holders: dict[str, set[str]] = {}
    for name, service in (compose.get("services") or {}).items():
        for value in environment_of(service).values():
            for variable in interpolated(value):
                if variable.startswith("S3_") and variable.endswith("_KEY"):
                    holders.setdefault(variable, set()).add(name)
    return holders


def s3_key_errors(compose: Mapping[str, Any], allowed: Mapping[str, set[str]]) -> list[str]:
    """Services that get an S3 key variable they are not meant to hold."""
    return [
        f"{service}: gets {variable}"
        for variable, services in sorted(s3_key_holders(compose).items())
        for service in sorted(services - allowed.get(variable, set()))
    ]


def s3_init_buckets(compose: Mapping[str, Any]) -> list[str]:
    """The buckets the s3-init job creates, read with the job's own argument parser."""
    from deployments.s3_buckets import argument_parser

    argv = argv_of(compose["services"]["s3-init"]["command"])
    assert argv[:3] == ["python", "-m", "deployments.s3_buckets"], argv
    return argument_parser().parse_args(argv[3:]).buckets


HEREDOC = re.compile(r"<<'?(?P<tag>[A-Z]+)'?\n(?P<body>.*?)\n(?P=tag)\n", re.DOTALL)


def seaweedfs_identities(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The S3 identities the seaweedfs service writes at start, by name.

    Keys appear as the variable names the container's shell expands (`$$VAR` -> `VAR`).
    """
    script = "\n".join(argv_of(service.get("command")))
    match = HEREDOC.search(script)
    if match is None:
        return {}
    body = re.sub(r"\$\$\{?(\w+)\}?", r"\1", match["body"])
    return {identity["name"]: identity for identity in json.loads(body)["identities"]}


# The S3 clients of the stack and the env names of their access key and secret.
S3_CLIENTS = {
    "s3-init": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
    "blocks": ("CRIMEFLOW_S3_ACCESS_KEY_ID", "CRIMEFLOW_S3_SECRET_ACCESS_KEY"),
    "mlflow": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
}


def identity_errors(compose: Mapping[str, Any]) -> list[str]:
    """Each S3 client's key pair is one seaweedfs identity; crimeflow's has no admin rights."""
    services = compose["services"]
    source = {  # (service, env name) -> the .env variable its value comes from
        (name, key): next(iter(interpolated(value)), "")
        for name, service in services.items()
        for key, value in environment_of(service).items()
    }
    # The script names container variables of seaweedfs; map them to .env variables too.
    identities = {
        tuple(source.get(("seaweedfs", c[k]), "") for k in ("accessKey", "secretKey")): identity
        for identity in seaweedfs_identities(services["seaweedfs"]).values()
        for c in identity["credentials"][:1]
    }
    used = {
        client: identities.get((source[(client, key)], source[(client, secret)]))
        for client, (key, secret) in S3_CLIENTS.items()
    }
    errors = [
        f"{client}: its key pair is no seaweedfs identity" for client in used if not used[client]
    ]
    if used["s3-init"] and "Admin" not in used["s3-init"]["actions"]:
        errors.append("s3-init: its identity cannot create buckets (no Admin)")
    if used["mlflow"] is not used["blocks"]:
        errors.append("mlflow: uses another S3 identity than the blocks")
    if not used["blocks"]:
        return errors
    actions = set(used["blocks"]["actions"])
    errors += [f"crimeflow identity: unscoped action {a}" for a in sorted(actions) if ":" not in a]
    buckets = s3_init_buckets(compose)
    errors += [
        f"crimeflow identity: no {action}:{bucket}"
        for bucket in buckets
        for action in ("Read", "Write", "List")
        if f"{action}:{bucket}" not in actions
    ]
    errors += [
        f"crimeflow identity: {a} is not a bucket s3-init creates"
        for a in sorted(actions)
        if ":" in a and a.split(":", 1)[1].split("/")[0] not in buckets
    ]
    return errors


def redis_errors(compose: Mapping[str, Any]) -> list[str]:
    """The API's Redis URL points at a healthy redis service, with the password it requires."""
    services = compose["services"]
    url = environment_of(services["api"]).get("CRIMEFLOW_REDIS_URL", "")
    match = re.fullmatch(r"redis://(?:[^:@/]*:(?P<password>[^@]+)@)?(?P<host>[\w-]+):6379/\d+", url)
    if match is None:
        return [f"api: CRIMEFLOW_REDIS_URL {url!r} is not redis://[user:password@]host:6379/db"]
    host, errors = match["host"], []
    if host not in services:
        return [f"api: Redis host {host!r} is no service"]
    if depends_on(services["api"]).get(host) != "service_healthy":
        errors.append(f"api: does not wait for {host} to be healthy")
    required = interpolated(environment_of(services[host]).get("REDIS_PASSWORD", ""))
    if not match["password"] or interpolated(match["password"]) != required:
        errors.append(f"api: the URL's password is not {host}'s REDIS_PASSWORD")
    if "--requirepass" not in " ".join(argv_of(services[host].get("command"))):
        errors.append(f"{host}: requires no password")
    return errors


# The setting, the service whose published port it defaults to.
PUBLIC_URLS = {
    "CRIMEFLOW_API_PUBLIC_URL": "api",
    "CRIMEFLOW_MLFLOW_PUBLIC_URL": "mlflow",
    "CRIMEFLOW_PREFECT_PUBLIC_URL": "prefect-server",
}


def published_ports(service: Mapping[str, Any]) -> set[int]:
    """The host ports a service publishes (`[ip:]host:container` strings)."""
    return {int(str(port).split(":")[-2]) for port in service.get("ports") or [] if ":" in port}


def public_url_errors(compose: Mapping[str, Any], services: Iterable[str]) -> list[str]:
    """Each public URL set from a STACK_* variable, defaulting to the port compose publishes."""
    errors = []
    for name in services:
        env = environment_of(compose["services"][name])
        for setting, target in PUBLIC_URLS.items():
            value = env.get(setting, "")
            match = INTERPOLATION.fullmatch(value)
            if match is None or not match["name"].startswith("STACK_") or match["op"] != ":-":
                errors.append(f"{name}: {setting} is not ${{STACK_...:-default}}: {value!r}")
                continue
            port = re.fullmatch(r"http://localhost:(\d+)", match["arg"])
            if port is None or int(port[1]) not in published_ports(compose["services"][target]):
                errors.append(f"{name}: {setting} defaults to {match['arg']!r}, not {target}'s")
    return errors


def image_errors(compose: Mapping[str, Any]) -> list[str]:
    """Images of other projects pinned to a version tag; no MinIO (its images stopped)."""
    errors = []
    for name, service in (compose.get("services") or {}).items():
        if "build" in service:
            continue
        image = str(service.get("image", ""))
        repository, _, tag = image.partition(":")
        if not re.search(r"\d", tag) or tag.startswith("latest"):
            errors.append(f"{name}: image {image!r} is not pinned to a version")
        if "minio" in repository:
            errors.append(f"{name}: {image} (MinIO's community images are discontinued)")
    return errors


# --- docs agree with compose -----------------------------------------------------------------

DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "deployments" / "WORK_POOLS.md",
    ENV_EXAMPLE,
]
DOC_URL = re.compile(
    r"(?:https?|postgresql(?:\+\w+)?|redis)://(?:[^\s/@`'\"]+@)?(?P<host>[A-Za-z0-9_.<>-]+)"
)
# Host names the docs use as placeholders, not as compose services.
PLACEHOLDER_HOSTS = {"localhost", "host"}


def compose_networks(compose: Mapping[str, Any]) -> set[str]:
    """The Docker network names compose creates (a project's default is <project>_default)."""
    networks = dict(compose.get("networks") or {})
    networks.setdefault("default", None)
    return {
        (spec or {}).get("name") or f"{compose['name']}_{key}" for key, spec in networks.items()
    }


def doc_errors(text: str, where: str, compose: Mapping[str, Any]) -> list[str]:
    """Compose host names and networks a doc mentions that compose does not have."""
    services = set(compose["services"])
    errors = [
        f"{where}: {m.group(0)} names no compose service"
        for m in DOC_URL.finditer(text)
        if "." not in m["host"]
        and not m["host"].startswith("<")
        and m["host"] not in PLACEHOLDER_HOSTS
        and m["host"] not in services
    ]
    for listed in re.findall(r"networks:\s*\[([^\]]*)\]", text):
        errors += [
            f"{where}: network {network} is not compose's"
            for network in (n.strip() for n in listed.split(","))
            if network and network not in compose_networks(compose)
        ]
    return errors


def compose_table_services(text: str) -> set[str]:
    """The services the Compose section's table of docs/operations.md lists."""
    section = text.split("### Compose", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `([\w-]+)` \|", section, re.MULTILINE))


# --- commands: crimeflow subcommands exist in the typer app -------------------------------------


def argv_of(value: Any) -> list[str]:
    """A compose/k8s command as argv (a string is split like a shell would)."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(item) for item in value]


def crimeflow_invocations(argv: list[str]) -> list[list[str]]:
    """Every `crimeflow ...` call in argv, also inside `sh -c "..."` scripts."""
    calls: list[list[str]] = []
    for index, token in enumerate(argv):
        if any(ch.isspace() for ch in token):
            calls += crimeflow_invocations(shlex.split(token))
        elif Path(token).name == "crimeflow" and (
            index == 0 or argv[index - 1] in SHELL_SEPARATORS
        ):
            rest = argv[index + 1 :]
            end = next((i for i, t in enumerate(rest) if t in SHELL_SEPARATORS), len(rest))
            calls.append([token, *rest[:end]])
    return calls


def is_group(command: Any) -> bool:
    """A command group (typer vendors click, so no isinstance against click's classes)."""
    return isinstance(getattr(command, "commands", None), Mapping)


def cli_errors(call: list[str]) -> list[str]:
    """What in a `crimeflow ...` call the typer app would reject: commands and option names."""
    command: Any = typer.main.get_command(app)
    path = ["crimeflow"]
    options = [t.split("=", 1)[0] for t in call[1:] if t.startswith("--")]
    for token in call[1:]:
        if token.startswith("-") or not is_group(command):
            break
        if token not in command.commands:
            return [f"{' '.join(path)}: no subcommand {token!r} (has {sorted(command.commands)})"]
        command = command.commands[token]
        path.append(token)
    if is_group(command):
        return [f"{' '.join(path)}: a command group, needs a subcommand"]
    known = {"--help"} | {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    return [f"{' '.join(path)}: no option {o}" for o in options if o not in known]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(current + stripped)
        current = ""
    pairs = []
    for line in joined:
        instruction, _, arguments = line.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def dockerfile_argv(arguments: str) -> list[str]:
    """The argv of a CMD/ENTRYPOINT/HEALTHCHECK CMD: exec (JSON) form or shell form."""
    arguments = re.sub(r"^(--[a-z-]+=\S+\s+)*", "", arguments)  # HEALTHCHECK options
    arguments = arguments.removeprefix("CMD ").strip()
    if arguments.startswith("["):
        return json.loads(arguments)
    return shlex.split(arguments)


def commands_in_stack() -> dict[str, list[str]]:
    """Every command the stack runs, by where it is declared."""
    found: dict[str, list[str]] = {}
    for name, service in compose_file()["services"].items():
        found[f"compose {name} command"] = argv_of(service.get("command"))
        found[f"compose {name} entrypoint"] = argv_of(service.get("entrypoint"))
    for instruction, arguments in dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if instruction in ("CMD", "ENTRYPOINT", "HEALTHCHECK"):
            found[f"Dockerfile {instruction}"] = dockerfile_argv(arguments)
    for doc in k8s_documents():
        for container in pod_containers(doc):
            where = f"k8s {doc['metadata']['name']}/{container['name']}"
            found[where] = argv_of(container.get("command")) + argv_of(container.get("args"))
    return found


# --- kubernetes ---------------------------------------------------------------------------------


def pod_containers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The containers of a workload's pod template (none for other kinds)."""
    if doc.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return []
    return doc["spec"]["template"]["spec"]["containers"]


def container_ports(container: Mapping[str, Any]) -> dict[str | int, int]:
    """A container's ports, reachable by name and by number."""
    ports: dict[str | int, int] = {}
    for port in container.get("ports") or []:
        ports[port["containerPort"]] = port["containerPort"]
        if "name" in port:
            ports[port["name"]] = port["containerPort"]
    return ports


def kustomization_errors(folder: Path) -> list[str]:
    """Resources that do not exist, and placeholders that would be applied."""
    kustomization = load_yaml(folder / "kustomization.yaml")
    errors = []
    for name in kustomization.get("resources") or []:
        if not (folder / name).is_file():
            errors.append(f"kustomization lists {name}, which does not exist")
        elif "template" in name:
            errors.append(f"kustomization applies the template {name}")
    return errors


def workload_errors(docs: list[dict[str, Any]]) -> list[str]:
    """Deployments select their own pods; Services select a Deployment and a port it has."""
    errors = []
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if not selector.items() <= labels.items():
            errors.append(f"{deployment['metadata']['name']}: selector does not match its pods")
    for service in (d for d in docs if d["kind"] == "Service"):
        selector = service["spec"].get("selector") or {}
        targets = [
            d
            for d in deployments
            if selector and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        if not targets:
            errors.append(f"Service {service['metadata']['name']} selects no Deployment")
            continue
        ports = {p for d in targets for c in pod_containers(d) for p in container_ports(c)}
        for port in service["spec"]["ports"]:
            if port.get("targetPort", port["port"]) not in ports:
                errors.append(f"Service {service['metadata']['name']}: no container port {port}")
    return errors


def probe_errors(deployment: Mapping[str, Any], ready: str, live: str) -> list[str]:
    """Readiness on `ready`, liveness on `live`, both on a port the container exposes."""
    errors = []
    for container in pod_containers(deployment):
        ports = container_ports(container)
        for kind, path in (("readinessProbe", ready), ("livenessProbe", live)):
            get = (container.get(kind) or {}).get("httpGet") or {}
            if get.get("path") != path:
                errors.append(f"{container['name']}: {kind} on {get.get('path')!r}, not {path}")
            if get.get("port") not in ports:
                errors.append(f"{container['name']}: {kind} port {get.get('port')!r} not exposed")
    return errors


def hpa_errors(docs: list[dict[str, Any]]) -> list[str]:
    """The HPA is autoscaling/v2, scales an existing Deployment, and on CPU."""
    errors = []
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    if not hpas:
        errors.append("no HorizontalPodAutoscaler")
    for hpa in hpas:
        if hpa["apiVersion"] != "autoscaling/v2":
            errors.append(f"{hpa['metadata']['name']}: apiVersion {hpa['apiVersion']}")
        target = hpa["spec"]["scaleTargetRef"]
        if target["kind"] != "Deployment" or target["name"] not in names:
            errors.append(f"{hpa['metadata']['name']}: scales unknown {target}")
        resources = [
            m["resource"]["name"] for m in hpa["spec"].get("metrics", []) if "resource" in m
        ]
        if "cpu" not in resources:
            errors.append(f"{hpa['metadata']['name']}: no CPU metric")
    return errors


def k8s_secret_errors(docs: list[dict[str, Any]]) -> list[str]:
    """No secret in ConfigMaps or literal env values; Secrets hold placeholders only."""
    errors = url_password_errors(docs, allow_placeholders=True)
    for doc in docs:
        name = doc["metadata"]["name"]
        if doc["kind"] == "ConfigMap":
            errors += [
                f"ConfigMap {name}: secret {k}" for k in doc["data"] if SECRET_NAME.search(k)
            ]
        if doc["kind"] == "Secret":
            values = {**(doc.get("stringData") or {}), **(doc.get("data") or {})}
            errors += [
                f"Secret {name}: {k} is not a <placeholder>"
                for k, v in values.items()
                if not PLACEHOLDER.match(str(v))
            ]
        for container in pod_containers(doc):
            for env in container.get("env") or []:
                if SECRET_NAME.search(env["name"]) and "value" in env:
                    errors.append(f"{name}: {env['name']} as a literal, not a secretKeyRef")
    return errors


# The env names of an S3 key pair: crimeflow's settings and the AWS SDK's own.
S3_KEY_ENV = frozenset(
    {
        "CRIMEFLOW_S3_ACCESS_KEY_ID",
        "CRIMEFLOW_S3_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
)
# What `crimeflow blocks apply` needs to write the lake's blocks (besides the Prefect API URL).
BLOCKS_JOB_ENV = frozenset(
    {
        "CRIMEFLOW_LAKE_URL",
        "CRIMEFLOW_S3_BUCKET_BLOCK",
        "CRIMEFLOW_S3_ACCESS_KEY_ID",
        "CRIMEFLOW_S3_SECRET_ACCESS_KEY",
    }
)


def pod_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A workload's pod template spec."""
    return doc["spec"]["template"]["spec"]


def all_containers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A workload's containers and init containers (none for other kinds)."""
    if not pod_containers(doc):
        return []
    return [*pod_containers(doc), *(pod_spec(doc).get("initContainers") or [])]


def referenced_secrets(doc: Mapping[str, Any]) -> set[str]:
    """Every Secret a workload's pods read: envFrom, env secretKeyRef, secret volumes."""
    names: set[str] = set()
    for container in all_containers(doc):
        sources = container.get("envFrom") or []
        names |= {s["secretRef"]["name"] for s in sources if "secretRef" in s}
        names |= {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env") or []
            if "secretKeyRef" in (e.get("valueFrom") or {})
        }
    if pod_containers(doc):
        for volume in pod_spec(doc).get("volumes") or []:
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
            for source in (volume.get("projected") or {}).get("sources") or []:
                if "secret" in source:
                    names.add(source["secret"]["name"])
    return names


def pod_env_names(doc: Mapping[str, Any], docs: list[dict[str, Any]]) -> set[str]:
    """The env names a workload's containers get: `env` and every key of envFrom sources."""
    keys = {
        (d["kind"], d["metadata"]["name"]): {
            *(d.get("data") or {}),
            *(d.get("stringData") or {}),
        }
        for d in docs
        if d["kind"] in ("ConfigMap", "Secret")
    }
    names: set[str] = set()
    for container in all_containers(doc):
        names |= {e["name"] for e in container.get("env") or []}
        for source in container.get("envFrom") or []:
            for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if ref in source:
                    found = keys.get((kind, source[ref]["name"]), set())
                    names |= {source.get("prefix", "") + key for key in found}
    return names


def is_blocks_job(doc: Mapping[str, Any]) -> bool:
    """A Job whose pod runs `crimeflow blocks apply`."""
    return doc.get("kind") == "Job" and any(
        call[1:3] == ["blocks", "apply"]
        for c in pod_containers(doc)
        for call in crimeflow_invocations(argv_of(c.get("command")) + argv_of(c.get("args")))
    )


def s3_key_secret_errors(docs: list[dict[str, Any]]) -> list[str]:
    """Only the blocks Job gets an S3 key; every other pod gets the block name instead.

    `docs` are the kustomization's objects plus the secret template's Secrets.
    """
    key_secrets = {
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Secret"
        and S3_KEY_ENV & {*(d.get("stringData") or {}), *(d.get("data") or {})}
    }
    jobs = [d for d in docs if is_blocks_job(d)]
    errors = [] if len(jobs) == 1 else [f"{len(jobs)} Jobs run `crimeflow blocks apply`, not 1"]
    for doc in (d for d in docs if pod_containers(d)):
        name = f"{doc['kind']} {doc['metadata']['name']}"
        env = pod_env_names(doc, docs)
        if is_blocks_job(doc):
            errors += [f"{name}: gets no {n}" for n in sorted(BLOCKS_JOB_ENV - env)]
            continue
        errors += [
            f"{name}: references Secret {s}, which holds an S3 key"
            for s in sorted(referenced_secrets(doc) & key_secrets)
        ]
        errors += [f"{name}: gets {n}" for n in sorted(env & S3_KEY_ENV)]
        if "CRIMEFLOW_S3_BUCKET_BLOCK" not in env:
            errors.append(f"{name}: gets no CRIMEFLOW_S3_BUCKET_BLOCK, so no way to the lake")
    return errors


def blocks_job_errors(docs: list[dict[str, Any]]) -> list[str]:
    """The blocks Job: bounded retries, cleaned up, run like the API (image, user, limits)."""
    jobs = [d for d in docs if is_blocks_job(d)]
    if not jobs:
        return ["no Job runs `crimeflow blocks apply`"]
    api = api_deployment(docs)
    api_container = pod_containers(api)[0]
    errors = []
    for job in jobs:
        name, spec = job["metadata"]["name"], job["spec"]
        for field in ("backoffLimit", "ttlSecondsAfterFinished"):
            if not isinstance(spec.get(field), int) or spec[field] <= 0:
                errors.append(f"{name}: {field} is {spec.get(field)!r}, not a positive number")
        if pod_spec(job).get("restartPolicy") not in ("Never", "OnFailure"):
            errors.append(f"{name}: restartPolicy {pod_spec(job).get('restartPolicy')!r}")
        if pod_spec(job).get("securityContext") != pod_spec(api).get("securityContext"):
            errors.append(f"{name}: pod securityContext differs from the API's")
        for container in pod_containers(job):
            where = f"{name}/{container['name']}"
            if container.get("image") != api_container["image"]:
                errors.append(f"{where}: image {container.get('image')!r}, not the API's")
            if container.get("securityContext") != api_container.get("securityContext"):
                errors.append(f"{where}: securityContext differs from the API's")
            resources = container.get("resources") or {}
            errors += [
                f"{where}: no {kind}.{what}"
                for kind in ("requests", "limits")
                for what in ("cpu", "memory")
                if what not in (resources.get(kind) or {})
            ]
    return errors


# Validated against the oldest and the newest Kubernetes minor still supported upstream.
K8S_VERSIONS = ("1.35.0", "1.37.0")


def k8s_manifests(folder: Path = K8S) -> list[tuple[str, dict[str, Any]]]:
    """Every API object under the folder, by file: the kustomization's and the secret template."""
    return [
        (path.name, doc)
        for path in sorted(folder.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_yaml_documents(path)
    ]


def schema_errors(manifests: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    """Objects that the Kubernetes JSON schemas reject (strict: unknown fields too), offline."""
    errors = []
    for where, doc in manifests:
        name = f"{where}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(part) for part in error.path) or "(root)"
                errors.append(f"{name} (Kubernetes {error.version}): {path}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                errors.append(f"{name}: {error.message}")
    return errors


def pdb_errors(docs: list[dict[str, Any]]) -> list[str]:
    """A PodDisruptionBudget covers the API's pods and still lets a drain evict one of them."""
    deployment = api_deployment(docs)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    budgets = [
        d
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
        and d["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    if len(budgets) != 1:
        return [f"{len(budgets)} PodDisruptionBudgets select the API's pods, not 1"]
    spec = budgets[0]["spec"]
    if spec.get("minAvailable") != 1:
        return [f"API budget: minAvailable {spec.get('minAvailable')!r}, not 1"]
    fewest = [deployment["spec"].get("replicas", 1)]
    fewest += [
        h["spec"].get("minReplicas", 1)
        for h in docs
        if h["kind"] == "HorizontalPodAutoscaler"
        and h["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    ]
    # With no more pods than minAvailable, no pod may ever be evicted: node drains hang.
    return [f"API budget: {n} replicas leave no pod evictable" for n in fewest if n <= 1]


# --- tests: compose -------------------------------------------------------------------------


def test_compose_has_the_stack_services() -> None:
    services = compose_file()["services"]
    expected = {"postgres", "seaweedfs", "redis", "prefect-server", "prefect-worker", "mlflow"}
    assert expected | {"api", "s3-init", "blocks", "deploy"} <= set(services)
    assert {"exporter", "prometheus", "alertmanager", "grafana"} <= set(services)
    assert {n for n, s in services.items() if is_one_shot(s)} == {"s3-init", "blocks", "deploy"}


def test_compose_service_graph_is_sound() -> None:
    assert compose_graph_errors(compose_file()) == []


def _without_healthcheck(compose: dict[str, Any]) -> None:
    del compose["services"]["mlflow"]["healthcheck"]


def _disabled_healthcheck(compose: dict[str, Any]) -> None:
    compose["services"]["api"]["healthcheck"] = {"disable": True}


def _unknown_target(compose: dict[str, Any]) -> None:
    compose["services"]["api"]["depends_on"]["minio"] = {"condition": "service_started"}


def _healthy_on_one_shot(compose: dict[str, Any]) -> None:
    compose["services"]["api"]["depends_on"]["deploy"] = {"condition": "service_healthy"}


def _completed_on_long_running(compose: dict[str, Any]) -> None:
    compose["services"]["api"]["depends_on"]["mlflow"] = {
        "condition": "service_completed_successfully"
    }


def _cycle(compose: dict[str, Any]) -> None:
    compose["services"]["postgres"]["depends_on"] = ["api"]


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (_without_healthcheck, "mlflow: long-running service without a healthcheck"),
        (_disabled_healthcheck, "api: long-running service without a healthcheck"),
        (_unknown_target, "unknown service 'minio'"),
        (_healthy_on_one_shot, "waits for deploy to be healthy"),
        (_completed_on_long_running, "waits for mlflow to complete"),
        (_cycle, "dependency cycle: postgres -> api -> postgres"),
    ],
)
def test_compose_graph_checker_rejects_broken_copies(break_it: Any, message: str) -> None:
    broken = copy.deepcopy(compose_file())
    break_it(broken)
    errors = compose_graph_errors(broken)
    assert any(message in e for e in errors), errors


def test_cycle_detection_reports_a_three_service_cycle() -> None:
    services = {"a": {"depends_on": ["b"]}, "b": {"depends_on": ["c"]}, "c": {"depends_on": ["a"]}}
    assert dependency_cycles(services) == [["a", "b", "c", "a"]]
    assert dependency_cycles({"a": {"depends_on": ["b"]}, "b": {}}) == []


def test_compose_build_contexts_dockerfiles_and_bind_mounts_exist() -> None:
    compose = compose_file()
    builds = [s["build"] for s in compose["services"].values() if "build" in s]
    assert builds, "no service builds the project image"
    for build in builds:
        spec = {"context": build} if isinstance(build, str) else build
        context = ROOT / spec.get("context", ".")
        assert context.is_dir(), context
        assert (context / spec.get("dockerfile", "Dockerfile")).is_file(), spec
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} missing"
            else:
                assert source in named, f"{name}: volume {source} not declared"


def test_compose_crimeflow_variables_are_settings() -> None:
    names = [n for s in compose_file()["services"].values() for n in environment_of(s)]
    assert any(n.startswith("CRIMEFLOW_") for n in names)
    assert unknown_crimeflow_names(names) == []


def test_unknown_crimeflow_names_are_rejected() -> None:
    assert unknown_crimeflow_names(["CRIMEFLOW_LAKE_URL", "CRIMEFLOW_LAKE_URI", "PATH"]) == [
        "CRIMEFLOW_LAKE_URI"
    ]


def test_compose_has_no_literal_secrets() -> None:
    assert compose_secret_errors(compose_file()) == []


def test_secret_checker_rejects_literals() -> None:
    broken = copy.deepcopy(compose_file())
    broken["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] = "hunter2"
    broken["services"]["api"]["environment"]["CRIMEFLOW_API_KEY"] = "${STACK_API_KEY:-hunter2}"
    broken["services"]["mlflow"]["command"].append("--backend-store-uri=postgresql://u:pw@db/x")
    errors = compose_secret_errors(broken)
    assert any("POSTGRES_PASSWORD is a literal" in e for e in errors), errors
    assert any("CRIMEFLOW_API_KEY is a literal" in e for e in errors), errors
    assert any("mlflow.command" in e and "literal password" in e for e in errors), errors
    assert is_interpolated_secret("${X:?set X}") and is_interpolated_secret("$$X")
    assert not is_interpolated_secret("${X}suffix")


def test_every_required_compose_variable_is_in_env_example() -> None:
    required = required_variables(compose_file())
    assert {"POSTGRES_PASSWORD", "S3_ADMIN_SECRET_KEY", "REDIS_PASSWORD"} <= required
    assert required <= set(dotenv_names(ENV_EXAMPLE.read_text(encoding="utf-8")))


def test_env_example_names_are_settings_and_secrets_are_empty() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert unknown_crimeflow_names(dotenv_names(text)) == []
    values = dict(
        line.split("=", 1)
        for line in text.splitlines()
        if line.strip() and not line.startswith("#") and "=" in line
    )
    assert literal_secret_errors(values, ".env.example") == []


def test_postgres_init_creates_the_roles_and_databases_compose_connects_to() -> None:
    created = set(
        re.findall(
            r"^create_database (\w+) \"\$\w+\" (\w+)$",
            POSTGRES_INIT.read_text(encoding="utf-8"),
            re.MULTILINE,
        )
    )
    urls = [
        text for _, text in strings_in(compose_file()["services"]) if text.startswith("postgresql")
    ]
    used = {
        (m["user"], url.rsplit("/", 1)[1]) for url in urls if (m := URL_CREDENTIALS.search(url))
    }
    assert len(used) == 3, used
    assert used <= created


def test_compose_buckets_exist_for_the_lake_and_mlflow() -> None:
    compose = compose_file()
    services = compose["services"]
    created = s3_init_buckets(compose)
    lake = environment_of(services["blocks"])["CRIMEFLOW_LAKE_URL"]
    artifacts = environment_of(services["mlflow"])["MLFLOW_ARTIFACTS_DESTINATION"]
    for url in (lake, artifacts):
        assert url.startswith("s3://") and url[5:].split("/")[0] in created, url
    # Created with the admin key, once the server answers; everything S3 waits for the job.
    assert depends_on(services["s3-init"]) == {"seaweedfs": "service_healthy"}
    for name in ("mlflow", "blocks"):
        assert depends_on(services[name])["s3-init"] == "service_completed_successfully"


def test_compose_servers_use_postgres_and_seaweedfs() -> None:
    services = compose_file()["services"]
    prefect = environment_of(services["prefect-server"])
    assert prefect["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    mlflow = services["mlflow"]
    assert argv_of(mlflow["command"])[:2] == ["mlflow", "server"]
    assert "--serve-artifacts" in argv_of(mlflow["command"])
    assert environment_of(mlflow)["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql")
    # One S3 endpoint, the S3 gateway's port on the seaweedfs service.
    script = " ".join(argv_of(services["seaweedfs"]["command"]))
    port = re.search(r"-s3\.port=(\d+)", script)
    assert port is not None and "-s3 " in script
    endpoint = f"http://seaweedfs:{port[1]}"
    assert environment_of(mlflow)["MLFLOW_S3_ENDPOINT_URL"] == endpoint
    assert environment_of(services["blocks"])["CRIMEFLOW_S3_ENDPOINT_URL"] == endpoint
    assert f"--endpoint-url {endpoint}" in " ".join(argv_of(services["s3-init"]["command"]))
    assert f"{port[1]}/healthz" in " ".join(services["seaweedfs"]["healthcheck"]["test"])
    for name in ("api", "prefect-worker"):
        env = environment_of(services[name])
        assert env["CRIMEFLOW_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["CRIMEFLOW_PREDICTION_LOG_URL"].startswith("postgresql+psycopg://")


# Who may hold which S3 key: the admin key only the server and the bucket job; crimeflow's key
# only the server, the blocks job and the MLflow server (artifacts are proxied through it).
S3_KEY_HOLDERS = {
    "S3_ADMIN_ACCESS_KEY": {"seaweedfs", "s3-init"},
    "S3_ADMIN_SECRET_KEY": {"seaweedfs", "s3-init"},
    "S3_CRIMEFLOW_ACCESS_KEY": {"seaweedfs", "blocks", "mlflow"},
    "S3_CRIMEFLOW_SECRET_KEY": {"seaweedfs", "blocks", "mlflow"},
}


def test_s3_keys_live_only_in_the_jobs_and_servers_that_need_them() -> None:
    compose = compose_file()
    assert s3_key_holders(compose) == S3_KEY_HOLDERS
    services = compose["services"]
    block = environment_of(services["blocks"])["CRIMEFLOW_S3_BUCKET_BLOCK"]
    assert block
    for name in ("api", "prefect-worker"):
        env = environment_of(services[name])
        # The worker and the API find the lake's location and key in the Prefect block.
        assert env["CRIMEFLOW_S3_BUCKET_BLOCK"] == block
        assert not {k for k in env if k.startswith(("CRIMEFLOW_S3_", "AWS_")) and "KEY" in k}
        assert depends_on(services[name])["blocks"] == "service_completed_successfully"


def test_s3_key_checker_rejects_a_key_in_the_api() -> None:
    broken = copy.deepcopy(compose_file())
    api = broken["services"]["api"]["environment"]
    api["CRIMEFLOW_S3_SECRET_ACCESS_KEY"] = "${S3_CRIMEFLOW_SECRET_KEY:?set it}"
    broken["services"]["deploy"]["environment"]["AWS_ACCESS_KEY_ID"] = "${S3_ADMIN_ACCESS_KEY}"
    assert s3_key_errors(broken, S3_KEY_HOLDERS) == [
        "deploy: gets S3_ADMIN_ACCESS_KEY",
        "api: gets S3_CRIMEFLOW_SECRET_KEY",
    ]


def test_seaweedfs_gives_crimeflow_its_buckets_and_no_admin() -> None:
    compose = compose_file()
    identities = seaweedfs_identities(compose["services"]["seaweedfs"])
    assert set(identities) == {"admin", "crimeflow"}
    assert identity_errors(compose) == []


def test_seaweedfs_start_script_writes_the_identities_its_server_reads(tmp_path: Path) -> None:
    # Run the service's script as its container would (compose turns $$ into $), with the
    # config written under tmp_path and the image's entrypoint replaced by an echo.
    service = compose_file()["services"]["seaweedfs"]
    assert service["entrypoint"][0] == "/bin/sh"
    config = tmp_path / "s3.json"
    script = argv_of(service["command"])[0].replace("$$", "$")
    script = script.replace("/etc/seaweedfs/s3.json", str(config))
    script = script.replace("exec /entrypoint.sh", "echo /entrypoint.sh")
    keys = {name: f"value-of-{name.lower()}" for name in environment_of(service)}
    done = subprocess.run(
        [*service["entrypoint"], script],
        env={"PATH": "/usr/bin:/bin", **keys},
        capture_output=True,
        text=True,
        check=True,
    )
    identities = {
        i["name"]: i for i in json.loads(config.read_text(encoding="utf-8"))["identities"]
    }
    assert identities["crimeflow"]["credentials"] == [
        {"accessKey": keys["S3_CRIMEFLOW_ACCESS_KEY"], "secretKey": keys["S3_CRIMEFLOW_SECRET_KEY"]}
    ]
    assert identities["admin"]["credentials"][0]["accessKey"] == keys["S3_ADMIN_ACCESS_KEY"]
    assert f"-s3.config={config}" in done.stdout.split()
    assert done.stdout.split()[:2] == ["/entrypoint.sh", "server"]


def test_identity_checker_rejects_admin_rights_and_missing_buckets() -> None:
    broken = copy.deepcopy(compose_file())
    seaweedfs = broken["services"]["seaweedfs"]
    script = seaweedfs["command"][0]
    script = script.replace('"Write:crimeflow-lake", ', "")
    script = script.replace('"Read:crimeflow-mlflow", ', '"Admin", "Read:other-bucket", ')
    seaweedfs["command"] = [script]
    broken["services"]["mlflow"]["environment"]["AWS_ACCESS_KEY_ID"] = "${S3_ADMIN_ACCESS_KEY}"
    errors = identity_errors(broken)
    assert "mlflow: its key pair is no seaweedfs identity" in errors
    assert "mlflow: uses another S3 identity than the blocks" in errors
    assert "crimeflow identity: unscoped action Admin" in errors
    assert "crimeflow identity: no Write:crimeflow-lake" in errors
    assert "crimeflow identity: no Read:crimeflow-mlflow" in errors
    assert "crimeflow identity: Read:other-bucket is not a bucket s3-init creates" in errors


def test_identity_checker_rejects_a_bucket_job_without_admin() -> None:
    broken = copy.deepcopy(compose_file())
    env = broken["services"]["s3-init"]["environment"]
    env["AWS_ACCESS_KEY_ID"] = "${S3_CRIMEFLOW_ACCESS_KEY:?x}"
    env["AWS_SECRET_ACCESS_KEY"] = "${S3_CRIMEFLOW_SECRET_KEY:?x}"
    assert identity_errors(broken) == ["s3-init: its identity cannot create buckets (no Admin)"]


def test_the_api_shares_its_rate_limits_through_redis() -> None:
    compose = compose_file()
    assert redis_errors(compose) == []
    api = argv_of(compose["services"]["api"]["command"])
    # 2 workers by default: the case shared limits exist for.
    assert api[api.index("--workers") + 1] == "${STACK_API_WORKERS:-2}"


def test_redis_checker_rejects_a_wrong_host_password_or_order() -> None:
    broken = copy.deepcopy(compose_file())
    del broken["services"]["api"]["depends_on"]["redis"]
    env = broken["services"]["api"]["environment"]
    env["CRIMEFLOW_REDIS_URL"] = "redis://default:${OTHER:?x}@redis:6379/0"
    errors = redis_errors(broken)
    assert "api: does not wait for redis to be healthy" in errors
    assert "api: the URL's password is not redis's REDIS_PASSWORD" in errors
    env["CRIMEFLOW_REDIS_URL"] = "redis://cache:6379/0"
    assert redis_errors(broken) == ["api: Redis host 'cache' is no service"]


def test_blocks_job_writes_the_lake_blocks_before_anything_uses_them() -> None:
    services = compose_file()["services"]
    blocks = services["blocks"]
    assert argv_of(blocks["command"]) == ["crimeflow", "blocks", "apply"]
    assert depends_on(blocks) == {
        "prefect-server": "service_healthy",
        "s3-init": "service_completed_successfully",
    }
    env = environment_of(blocks)
    assert env["CRIMEFLOW_LAKE_URL"].startswith("s3://")
    assert env["PREFECT_API_URL"] == environment_of(services["api"])["PREFECT_API_URL"]
    for name in ("prefect-worker", "api", "deploy"):
        assert depends_on(services[name])["blocks"] == "service_completed_successfully"


def test_public_urls_come_from_stack_variables_with_localhost_defaults() -> None:
    compose = compose_file()
    crimeflow = ("api", "prefect-worker", "blocks", "deploy")
    assert public_url_errors(compose, crimeflow) == []
    prefect = environment_of(compose["services"]["prefect-server"])
    assert prefect["PREFECT_UI_API_URL"] == "${STACK_PREFECT_PUBLIC_URL:-http://localhost:4200}/api"


def test_public_url_checker_rejects_literals_and_wrong_defaults() -> None:
    broken = copy.deepcopy(compose_file())
    env = broken["services"]["api"]["environment"]
    env["CRIMEFLOW_API_PUBLIC_URL"] = "http://0.0.0.0:8000"
    env["CRIMEFLOW_MLFLOW_PUBLIC_URL"] = "${STACK_MLFLOW_PUBLIC_URL:-http://localhost:5001}"
    del env["CRIMEFLOW_PREFECT_PUBLIC_URL"]
    errors = public_url_errors(broken, ["api"])
    assert len(errors) == 3, errors
    assert "CRIMEFLOW_API_PUBLIC_URL is not ${STACK_" in errors[0]
    assert "defaults to 'http://localhost:5001', not mlflow's" in errors[1]
    assert "CRIMEFLOW_PREFECT_PUBLIC_URL is not ${STACK_" in errors[2]


def published_port_errors(compose: Mapping[str, Any]) -> list[str]:
    """Published ports that listen on every interface instead of 127.0.0.1 only."""
    return [
        f"{name}: port {port} is not bound to 127.0.0.1"
        for name, service in (compose.get("services") or {}).items()
        for port in service.get("ports") or []
        if not str(port).startswith("127.0.0.1:")
    ]


def test_compose_publishes_ports_on_localhost_only() -> None:
    compose = compose_file()
    assert published_port_errors(compose) == []
    broken = copy.deepcopy(compose)
    broken["services"]["grafana"]["ports"] = ["3000:3000"]
    assert published_port_errors(broken) == ["grafana: port 3000:3000 is not bound to 127.0.0.1"]


def test_compose_monitoring_services() -> None:
    services = compose_file()["services"]
    exporter = argv_of(services["exporter"]["command"])
    assert exporter[:2] == ["crimeflow", "exporter"]
    assert exporter[exporter.index("--port") + 1] == "9108"
    assert published_ports(services["exporter"]) == {9108}
    # Reads the loop's state only: no prediction-log URL, no S3 key, no API key.
    env = environment_of(services["exporter"])
    assert not {"CRIMEFLOW_PREDICTION_LOG_URL", "CRIMEFLOW_API_KEY"} & set(env)
    assert "exporter" not in {
        s for holders in s3_key_holders(compose_file()).values() for s in holders
    }
    assert (
        env["CRIMEFLOW_S3_BUCKET_BLOCK"]
        == environment_of(services["api"])["CRIMEFLOW_S3_BUCKET_BLOCK"]
    )
    prometheus = argv_of(services["prometheus"]["command"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus
    assert "./deployments/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    grafana = environment_of(services["grafana"])
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert depends_on(services["grafana"]) == {"prometheus": "service_healthy"}


def test_compose_images_are_pinned_and_still_published() -> None:
    assert image_errors(compose_file()) == []


def test_image_checker_rejects_floating_tags_and_minio() -> None:
    broken = copy.deepcopy(compose_file())
    broken["services"]["seaweedfs"]["image"] = "chrislusf/seaweedfs:latest"
    broken["services"]["redis"]["image"] = "redis"
    broken["services"]["s3"] = {"image": "minio/minio:RELEASE.2025-04-22T22-12-26Z"}
    assert image_errors(broken) == [
        "seaweedfs: image 'chrislusf/seaweedfs:latest' is not pinned to a version",
        "redis: image 'redis' is not pinned to a version",
        "s3: minio/minio:RELEASE.2025-04-22T22-12-26Z (MinIO's community images are discontinued)",
    ]


def test_docs_name_only_compose_services_and_networks() -> None:
    compose = compose_file()
    errors = [
        e for path in DOCS for e in doc_errors(path.read_text(encoding="utf-8"), path.name, compose)
    ]
    assert errors == []
    assert "crimeflow" in compose_networks(compose)


def test_doc_checker_rejects_stale_hosts_and_networks() -> None:
    compose = compose_file()
    text = (
        "CRIMEFLOW_S3_ENDPOINT_URL: http://minio:9000\n"
        "postgresql+psycopg://u@postgres/db and http://localhost:8000, https://data.example.org\n"
        "networks: [crimeflow_default]\n"
    )
    assert doc_errors(text, "x.md", compose) == [
        "x.md: http://minio names no compose service",
        "x.md: network crimeflow_default is not compose's",
    ]
    assert compose_networks({"name": "p", "services": {}}) == {"p_default"}


def test_operations_doc_lists_every_compose_service() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert compose_table_services(text) == set(compose_file()["services"])
    assert compose_table_services("### Compose\n| `api` | x |\n### Next\n| `b` | y |") == {"api"}


def test_compose_worker_api_and_deploy_commands() -> None:
    services = compose_file()["services"]
    worker = argv_of(services["prefect-worker"]["command"])
    assert worker[:3] == ["prefect", "worker", "start"]
    assert worker[worker.index("--pool") + 1] == WORK_POOL
    assert worker[worker.index("--type") + 1] == "process"
    assert "--with-healthcheck" in worker
    assert "8080/health" in " ".join(services["prefect-worker"]["healthcheck"]["test"])
    api = argv_of(services["api"]["command"])
    assert api[:6] == ["crimeflow", "api", "--host", "0.0.0.0", "--port", "8000"]
    assert "--workers" in api
    assert "8000/health" in " ".join(services["api"]["healthcheck"]["test"])
    deploy = argv_of(services["deploy"]["command"])
    assert deploy[0] == "prefect" and deploy[-2:] == ["deploy", "--all"]


def test_prefect_yaml_uses_the_workers_pool() -> None:
    if not PREFECT_YAML.is_file():
        pytest.skip("prefect.yaml is not there yet")
    pools = {
        (d.get("work_pool") or {}).get("name")
        for d in (load_yaml(PREFECT_YAML) or {}).get("deployments") or []
    }
    assert pools <= {WORK_POOL, None}, pools


# --- tests: commands ----------------------------------------------------------------------------


def test_every_crimeflow_command_of_the_stack_exists() -> None:
    calls = {
        where: call
        for where, argv in commands_in_stack().items()
        for call in crimeflow_invocations(argv)
    }
    assert any(call[:2] == ["crimeflow", "api"] for call in calls.values())
    errors = [e for where, call in calls.items() for e in cli_errors(call)]
    assert errors == []


def test_cli_checker_rejects_unknown_commands_and_options() -> None:
    assert cli_errors(["crimeflow", "api", "--host", "0.0.0.0", "--workers", "2"]) == []
    assert cli_errors(["crimeflow", "config", "show"]) == []
    assert "no subcommand 'serve-api'" in cli_errors(["crimeflow", "serve-api"])[0]
    assert "no option --threads" in cli_errors(["crimeflow", "api", "--threads", "2"])[0]
    assert "needs a subcommand" in cli_errors(["crimeflow", "config"])[0]
    assert "no subcommand 'nope'" in cli_errors(["crimeflow", "soda", "nope"])[0]


def test_crimeflow_invocations_are_found_in_shell_scripts() -> None:
    argv = ["sh", "-c", "crimeflow config show && exec crimeflow api --port 1"]
    assert crimeflow_invocations(argv) == [
        ["crimeflow", "config", "show"],
        ["crimeflow", "api", "--port", "1"],
    ]
    assert crimeflow_invocations(["echo", "crimeflow", "image"]) == []


# --- tests: the image -----------------------------------------------------------------------


def test_dockerfile_shape() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    by_kind: dict[str, list[str]] = {}
    for instruction, arguments in instructions:
        by_kind.setdefault(instruction, []).append(arguments)
    assert by_kind["FROM"] == ["python:3.11-slim"]
    user = by_kind["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    runs = " ".join(by_kind["RUN"])
    assert "-r requirements.txt -c constraints.txt" in runs
    assert "--no-deps -e ." in runs
    assert "/health" in by_kind["HEALTHCHECK"][0]
    assert dockerfile_argv(by_kind["CMD"][-1])[0] == "crimeflow"
    for arguments in by_kind["COPY"]:
        *sources, _ = arguments.split()
        for source in sources:
            assert (ROOT / source).exists(), source
    # The user must exist before USER switches to it.
    index = [i for i, (kind, _) in enumerate(instructions) if kind == "USER"][-1]
    assert any("useradd" in a and user in a for k, a in instructions[:index] if k == "RUN")


def test_dockerignore_keeps_state_and_secrets_out_of_the_image() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".crimeflow", ".git", ".env"} <= patterns
    assert any("__pycache__" in p for p in patterns)
    for needed in ("requirements.txt", "constraints.txt", "pyproject.toml", "README.md"):
        assert needed not in patterns


# --- tests: kubernetes --------------------------------------------------------------------------


def test_kustomization_lists_existing_files_only() -> None:
    assert kustomization_errors(K8S) == []


def test_kustomization_checker_rejects_missing_files(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [gone.yaml, secret.template.yaml]\n", encoding="utf-8"
    )
    (tmp_path / "secret.template.yaml").write_text("kind: Secret\n", encoding="utf-8")
    errors = kustomization_errors(tmp_path)
    assert any("gone.yaml, which does not exist" in e for e in errors)
    assert any("applies the template" in e for e in errors)


def test_k8s_manifests_parse_and_are_named() -> None:
    docs = k8s_documents()
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"} <= kinds
    assert {"PodDisruptionBudget", "Job"} <= kinds
    for doc in docs:
        assert doc["apiVersion"] and doc["metadata"]["name"], doc
    for path in K8S.glob("*.yaml"):
        assert load_yaml_documents(path), path


def test_k8s_services_select_deployments_and_ports() -> None:
    assert workload_errors(k8s_documents()) == []


def test_workload_checker_rejects_a_selector_mismatch() -> None:
    docs = copy.deepcopy(k8s_documents())
    service = next(d for d in docs if d["kind"] == "Service")
    service["spec"]["selector"] = {"app.kubernetes.io/name": "crimeflow-apy"}
    assert any("selects no Deployment" in e for e in workload_errors(docs))
    service["spec"]["selector"] = api_deployment(docs)["spec"]["selector"]["matchLabels"]
    service["spec"]["ports"][0]["targetPort"] = "https"
    assert any("no container port" in e for e in workload_errors(docs))


def api_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The Deployment that runs `crimeflow api`."""
    return next(
        d
        for d in docs
        for c in pod_containers(d)
        if argv_of(c.get("command"))[:2] == ["crimeflow", "api"]
    )


def test_k8s_api_probes_hit_ready_and_health_on_the_container_port() -> None:
    deployment = api_deployment(k8s_documents())
    assert probe_errors(deployment, ready="/ready", live="/health") == []
    container = pod_containers(deployment)[0]
    assert 8000 in container_ports(container).values()
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_probe_checker_rejects_wrong_paths_and_ports() -> None:
    deployment = copy.deepcopy(api_deployment(k8s_documents()))
    container = pod_containers(deployment)[0]
    container["readinessProbe"]["httpGet"]["path"] = "/health"
    container["livenessProbe"]["httpGet"]["port"] = 9999
    errors = probe_errors(deployment, ready="/ready", live="/health")
    assert any("readinessProbe on '/health'" in e for e in errors), errors
    assert any("livenessProbe port 9999 not exposed" in e for e in errors), errors


def test_k8s_hpa_scales_the_api_on_cpu() -> None:
    docs = k8s_documents()
    assert hpa_errors(docs) == []
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == api_deployment(docs)["metadata"]["name"]
    hpa["spec"]["scaleTargetRef"]["name"] = "nope"
    hpa["apiVersion"] = "autoscaling/v1"
    assert len(hpa_errors(docs)) == 2


def test_k8s_configmap_is_settings_and_strings() -> None:
    configmap = next(d for d in k8s_documents() if d["kind"] == "ConfigMap")
    assert unknown_crimeflow_names(configmap["data"]) == []
    assert all(isinstance(v, str) for v in configmap["data"].values()), configmap["data"]
    # The same lake and block as compose, so the docs' block names hold for both.
    compose_blocks = environment_of(compose_file()["services"]["blocks"])
    for name in ("CRIMEFLOW_LAKE_URL", "CRIMEFLOW_S3_BUCKET_BLOCK"):
        assert configmap["data"][name] == compose_blocks[name], name
    assert configmap["data"]["PREFECT_API_URL"] == configmap["data"]["CRIMEFLOW_PREFECT_API_URL"]


def test_k8s_secrets_are_placeholders_and_references() -> None:
    template = k8s_secret_templates()
    assert {d["kind"] for d in template} == {"Secret"}
    assert {d["metadata"]["name"] for d in template} == {"crimeflow-secrets", "crimeflow-s3-keys"}
    docs = k8s_documents() + template
    assert k8s_secret_errors(docs) == []
    secret_names = {d["metadata"]["name"] for d in docs if d["kind"] == "Secret"}
    config_names = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    for secret in template:
        assert unknown_crimeflow_names(secret["stringData"]) == []
    for doc in docs:
        for container in pod_containers(doc):
            for source in container.get("envFrom") or []:
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secret_names
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_names


def test_k8s_secret_checker_rejects_real_values() -> None:
    docs = copy.deepcopy(k8s_secret_templates())
    by_name = {d["metadata"]["name"]: d for d in docs}
    by_name["crimeflow-secrets"]["stringData"]["CRIMEFLOW_API_KEY"] = "hunter2"
    by_name["crimeflow-s3-keys"]["stringData"]["CRIMEFLOW_S3_SECRET_ACCESS_KEY"] = "wJalrXUtnFEMI"
    docs.append(
        {
            "kind": "ConfigMap",
            "metadata": {"name": "c"},
            "data": {"CRIMEFLOW_PREDICTION_LOG_URL": "postgresql://u:pw@db/x"},
        }
    )
    errors = k8s_secret_errors(docs)
    assert any("CRIMEFLOW_API_KEY is not a <placeholder>" in e for e in errors), errors
    assert any("CRIMEFLOW_S3_SECRET_ACCESS_KEY is not a <placeholder>" in e for e in errors), errors
    assert any("literal password" in e for e in errors), errors


def test_k8s_only_the_blocks_job_gets_s3_keys() -> None:
    docs = k8s_documents() + k8s_secret_templates()
    assert s3_key_secret_errors(docs) == []
    job = next(d for d in docs if is_blocks_job(d))
    assert referenced_secrets(job) == {"crimeflow-s3-keys"}
    # The API and the worker still read the other secrets (log URL, API key, Socrata token).
    for doc in docs:
        if doc["kind"] == "Deployment":
            assert referenced_secrets(doc) == {"crimeflow-secrets"}, doc["metadata"]["name"]
    # The Job gets what compose's blocks service gets, the public links aside.
    compose_env = set(environment_of(compose_file()["services"]["blocks"]))
    needed = {n for n in compose_env if not n.endswith("_PUBLIC_URL")}
    assert needed - pod_env_names(job, docs) == set()


def _api_reads_the_key_secret(docs: list[dict[str, Any]]) -> None:
    envs = pod_containers(api_deployment(docs))[0]["envFrom"]
    envs.append({"secretRef": {"name": "crimeflow-s3-keys"}})


def _worker_reads_one_key(docs: list[dict[str, Any]]) -> None:
    worker = next(d for d in docs if d["metadata"]["name"] == "crimeflow-prefect-worker")
    reference = {"name": "crimeflow-s3-keys", "key": "CRIMEFLOW_S3_SECRET_ACCESS_KEY"}
    pod_containers(worker)[0]["env"].append(
        {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": reference}}
    )


def _key_back_in_the_shared_secret(docs: list[dict[str, Any]]) -> None:
    shared = next(d for d in docs if d["metadata"]["name"] == "crimeflow-secrets")
    shared["stringData"]["CRIMEFLOW_S3_ACCESS_KEY_ID"] = "<s3-access-key-id>"


def _job_without_keys(docs: list[dict[str, Any]]) -> None:
    job = next(d for d in docs if is_blocks_job(d))
    pod_containers(job)[0]["envFrom"] = [{"configMapRef": {"name": "crimeflow-config"}}]


def _no_block_name(docs: list[dict[str, Any]]) -> None:
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    del configmap["data"]["CRIMEFLOW_S3_BUCKET_BLOCK"]


def _no_blocks_job(docs: list[dict[str, Any]]) -> None:
    docs[:] = [d for d in docs if not is_blocks_job(d)]


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (
            _api_reads_the_key_secret,
            "Deployment crimeflow-api: references Secret crimeflow-s3-keys, which holds an S3 key",
        ),
        (_api_reads_the_key_secret, "Deployment crimeflow-api: gets CRIMEFLOW_S3_ACCESS_KEY_ID"),
        (
            _worker_reads_one_key,
            "Deployment crimeflow-prefect-worker: references Secret crimeflow-s3-keys",
        ),
        (_worker_reads_one_key, "Deployment crimeflow-prefect-worker: gets AWS_SECRET_ACCESS_KEY"),
        (
            _key_back_in_the_shared_secret,
            "Deployment crimeflow-api: references Secret crimeflow-secrets, which holds an S3 key",
        ),
        (_job_without_keys, "Job crimeflow-blocks: gets no CRIMEFLOW_S3_SECRET_ACCESS_KEY"),
        (_no_block_name, "Deployment crimeflow-prefect-worker: gets no CRIMEFLOW_S3_BUCKET_BLOCK"),
        (_no_block_name, "Job crimeflow-blocks: gets no CRIMEFLOW_S3_BUCKET_BLOCK"),
        (_no_blocks_job, "0 Jobs run `crimeflow blocks apply`, not 1"),
    ],
)
def test_s3_key_checker_rejects_broken_copies(break_it: Any, message: str) -> None:
    docs = copy.deepcopy(k8s_documents() + k8s_secret_templates())
    break_it(docs)
    errors = s3_key_secret_errors(docs)
    assert any(e.startswith(message) for e in errors), errors


def test_k8s_blocks_job_is_bounded_and_runs_like_the_api() -> None:
    assert blocks_job_errors(k8s_documents()) == []


def test_blocks_job_checker_rejects_a_broken_job() -> None:
    docs = copy.deepcopy(k8s_documents())
    job = next(d for d in docs if is_blocks_job(d))
    del job["spec"]["ttlSecondsAfterFinished"]
    job["spec"]["backoffLimit"] = 0
    pod_spec(job)["securityContext"]["runAsNonRoot"] = False
    container = pod_containers(job)[0]
    container["image"] = "python:3.11-slim"
    del container["resources"]["limits"]
    errors = blocks_job_errors(docs)
    assert errors == [
        "crimeflow-blocks: backoffLimit is 0, not a positive number",
        "crimeflow-blocks: ttlSecondsAfterFinished is None, not a positive number",
        "crimeflow-blocks: pod securityContext differs from the API's",
        "crimeflow-blocks/blocks: image 'python:3.11-slim', not the API's",
        "crimeflow-blocks/blocks: no limits.cpu",
        "crimeflow-blocks/blocks: no limits.memory",
    ]
    docs.remove(job)
    assert blocks_job_errors(docs) == ["no Job runs `crimeflow blocks apply`"]


def test_k8s_blocks_job_rerun_commands_name_real_objects() -> None:
    """The re-run recipe in the Job's comment names this Job, namespace and API Deployment."""
    text = (K8S / "blocks-job.yaml").read_text(encoding="utf-8")
    docs = k8s_documents()
    job = next(d for d in docs if is_blocks_job(d))
    namespace = load_yaml(K8S / "kustomization.yaml")["namespace"]
    job_name, api_name = job["metadata"]["name"], api_deployment(docs)["metadata"]["name"]
    recipe = [line.strip("# ").strip() for line in text.splitlines() if "  kubectl " in line]
    assert recipe == [
        f"kubectl -n {namespace} delete job {job_name} --ignore-not-found",
        f"kubectl apply -k {K8S.relative_to(ROOT)}",
        f"kubectl -n {namespace} wait --for=condition=complete job/{job_name} --timeout=10m",
        f"kubectl -n {namespace} rollout restart deployment/{api_name}",
    ]


def invoke_blocks_apply() -> Any:
    """`crimeflow blocks apply` in-process, with settings read afresh from the environment."""
    from typer.testing import CliRunner

    from crimeflow.contract.settings import get_settings

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["blocks", "apply"])
    finally:
        get_settings.cache_clear()


def test_blocks_job_fails_fast_on_a_bad_setting_and_retries_an_unreachable_prefect(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The Job's FailJob exit codes are the CLI's bad-setting code, not its unreachable-API one."""
    docs = k8s_documents()
    job = next(d for d in docs if is_blocks_job(d))
    fail_now = {
        code
        for rule in job["spec"]["podFailurePolicy"]["rules"]
        if rule["action"] == "FailJob"
        for code in rule["onExitCodes"]["values"]
    }
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    for name, value in configmap["data"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CRIMEFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("CRIMEFLOW_S3_ACCESS_KEY_ID", "placeholder-id")
    monkeypatch.setenv("CRIMEFLOW_S3_SECRET_ACCESS_KEY", "placeholder-secret")
    # Nothing listens on port 9 (discard) here: the Prefect server is not up yet.
    for name in ("PREFECT_API_URL", "CRIMEFLOW_PREFECT_API_URL"):
        monkeypatch.setenv(name, "http://127.0.0.1:9/api")
    unreachable = invoke_blocks_apply()
    assert unreachable.exit_code not in {0, *fail_now}, unreachable.output
    assert "cannot write blocks to the Prefect API" in unreachable.output

    monkeypatch.setenv("CRIMEFLOW_LAKE_URL", str(tmp_path / "lake"))  # not s3://: a bad setting
    bad_setting = invoke_blocks_apply()
    assert bad_setting.exit_code in fail_now, bad_setting.output
    assert "must be s3://" in bad_setting.output


def test_k8s_worker_polls_the_process_pool() -> None:
    workers = [
        c
        for d in k8s_documents()
        for c in pod_containers(d)
        if argv_of(c.get("command"))[:3] == ["prefect", "worker", "start"]
    ]
    assert len(workers) == 1
    argv = argv_of(workers[0]["command"])
    assert argv[argv.index("--pool") + 1] == WORK_POOL
    assert workers[0]["livenessProbe"]["httpGet"]["port"] in container_ports(workers[0])


def test_k8s_manifests_match_the_kubernetes_schemas() -> None:
    manifests = k8s_manifests()
    files = {where for where, _ in manifests}
    # Every file, the secret template included (it is applied by hand, so it must be valid).
    assert files == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert "secret.template.yaml" in files
    assert schema_errors(manifests) == []


def test_schema_checker_rejects_broken_manifests() -> None:
    deployment = copy.deepcopy(api_deployment(k8s_documents()))
    del deployment["spec"]["selector"]
    mistyped = copy.deepcopy(api_deployment(k8s_documents()))
    mistyped["spec"]["replicas"] = "two"
    misspelt = copy.deepcopy(api_deployment(k8s_documents()))
    misspelt["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    retired = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {}}
    errors = schema_errors([("a", deployment), ("b", mistyped), ("c", misspelt), ("d", retired)])
    assert any(e.startswith("a: ") and "'selector' is a required property" in e for e in errors)
    assert any(e.startswith("b: ") and "spec.replicas: 'two' is not of type" in e for e in errors)
    assert any(e.startswith("c: ") and "'resource' was unexpected" in e for e in errors)
    assert any(e.startswith("d: ") and "policy/v1beta1" in e for e in errors), errors


def test_k8s_api_has_a_disruption_budget() -> None:
    docs = k8s_documents()
    assert pdb_errors(docs) == []


def test_pdb_checker_rejects_a_wrong_selector_or_no_room_to_evict() -> None:
    docs = copy.deepcopy(k8s_documents())
    budget = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    budget["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "crimeflow-apy"}
    assert pdb_errors(docs) == ["0 PodDisruptionBudgets select the API's pods, not 1"]
    budget["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "crimeflow-api"}
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    hpa["spec"]["minReplicas"] = 1
    assert pdb_errors(docs) == ["API budget: 1 replicas leave no pod evictable"]


# --- tests: CI and hosts ------------------------------------------------------------------------


def test_ci_runs_ci_run_with_postgres_and_builds_the_image() -> None:
    workflow = load_yaml(CI)
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    jobs = workflow["jobs"].values()
    runners = [j for j in jobs if any(s.get("run") == "bash .ci/run" for s in j["steps"])]
    assert len(runners) == 1
    postgres = runners[0]["services"]["postgres"]
    assert "5432:5432" in postgres["ports"]
    builds = [
        s for j in jobs for s in j["steps"] if s.get("uses", "").startswith("docker/build-push")
    ]
    assert len(builds) == 1 and builds[0]["with"]["push"] is False
    assert (ROOT / builds[0]["with"]["file"]).is_file()


def test_no_file_points_an_installer_at_a_package_index() -> None:
    files = [COMPOSE, DOCKERFILE, DOCKERIGNORE, CI, ENV_EXAMPLE, POSTGRES_INIT, *K8S.glob("*")]
    files += [ROOT / name for name in ("requirements.txt", "requirements-dev.txt", "Makefile")]
    found = [
        f"{path.relative_to(ROOT)}: {option}"
        for path in files
        for option in INDEX_OPTIONS
        if option in path.read_text(encoding="utf-8").lower()
    ]
    assert found == []
