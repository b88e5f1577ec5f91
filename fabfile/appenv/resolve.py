"""The app's own variables, resolved through the layers (see the package's docstring)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..config import Config
from .store import EnvError, Store, clean, load_store, secrets_dir, store_path


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str
    secret: bool
    source: str


@dataclass(frozen=True)
class Missing:
    """A declared secret without a value: `message` says where it was looked for and how to set it."""
    name: str
    message: str


# --- resolving ---------------------------------------------------------------------------------------

def declared(cfg: Config) -> dict[str, tuple[str, int]]:
    """roles.yaml's names: NAME -> ("env", index) or ("secret", index in app.secrets)."""
    kinds = {name: ("env", i) for i, (name, _) in enumerate(cfg.app.env)}
    kinds.update({s.name: ("secret", i) for i, s in enumerate(cfg.app.secrets)})
    return kinds


def roles_name(cfg: Config) -> str:
    return cfg.path.name


def set_hint(name: str) -> str:
    return f"fab env.set --secret {name}=VALUE (or `fab env.set --secret -` with {name}=VALUE on stdin)"


def _ssm_value(cfg: Config, client, index: int, name: str, parameter: str) -> str | Missing:
    from botocore.exceptions import ClientError

    where = f"{roles_name(cfg)}: app.secrets[{index}].ssm"
    try:
        value = client.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ParameterNotFound":
            return Missing(name, f"{where}: {name}: SSM parameter {parameter} not found ({cfg.cluster.target}, "
                                 f"{cfg.cluster.region}); put it there: aws ssm put-parameter --name {parameter} "
                                 f"--type SecureString --value file://FILE (on the sandbox with --endpoint-url of "
                                 f"the local cloud), or set it here: {set_hint(name)}")
        raise EnvError(f"{where}: {name}: SSM GetParameter {parameter}: {error.get('Code')}: "
                       f"{error.get('Message')}") from None
    if not clean(value):
        raise EnvError(f"{where}: {name}: SSM parameter {parameter} holds a newline or NUL "
                       f"(the .env has one line per variable)")
    return value


def _declared_secret(cfg: Config, store: Store, index: int, ssm: Callable[[], Any]) -> EnvVar | Missing | None:
    spec = cfg.app.secrets[index]
    name, base = spec.name, f"{roles_name(cfg)} app.secrets"
    if spec.ssm is None:
        if name in store.unset:
            return None
        if name in store.secrets:
            return EnvVar(name, store.secrets[name], True, f"{base}, file {secrets_dir(cfg) / name}")
        return Missing(name, f"{roles_name(cfg)}: app.secrets[{index}]: {name} has no value: no file "
                             f"{secrets_dir(cfg) / name}; set it: {set_hint(name)}")
    if name in store.secrets:
        return EnvVar(name, store.secrets[name], True, f"fab env.set --secret (over ssm {spec.ssm})")
    if name in store.unset:
        return None
    value = _ssm_value(cfg, ssm(), index, name, spec.ssm)
    return value if isinstance(value, Missing) else EnvVar(name, value, True, f"{base}, ssm {spec.ssm}")


def _declared_plain(cfg: Config, store: Store, name: str, value: str) -> EnvVar | None:
    if name in store.secrets:
        return EnvVar(name, store.secrets[name], True, f"fab env.set --secret (over {roles_name(cfg)} app.env)")
    if name in store.plain:
        return EnvVar(name, store.plain[name], False, f"fab env.set (over {roles_name(cfg)} app.env)")
    if name in store.unset:
        return None
    return EnvVar(name, value, False, f"{roles_name(cfg)} app.env")


def once(factory: Callable[[], Any]) -> Callable[[], Any]:
    """`factory`, called on first use only (the SSM client: no cloud is opened for an app without SSM)."""
    made: list[Any] = []

    def get():
        if not made:
            made.append(factory())
        return made[0]
    return get


def cloud_ssm(cfg: Config) -> Callable[[], Any]:
    """The SSM client of the cluster's target, made on first use (one session: fabfile/cloud.py)."""
    from ..cloud import open_cloud

    return once(lambda: open_cloud(cfg.cluster.target, cfg.cluster.region).client("ssm"))


def entries(cfg: Config, store: Store, ssm: Callable[[], Any] | None = None) -> list[EnvVar | Missing]:
    """Every variable of the app's own (roles.yaml's order, then the overrides by name), or what is missing."""
    ssm = ssm or cloud_ssm(cfg)
    kinds = declared(cfg)
    for name in store.plain:
        if kinds.get(name, ("env",))[0] == "secret":
            raise EnvError(f"{store_path(cfg)}: {name} is a secret in {roles_name(cfg)} app.secrets; a plain value "
                           f"for it is refused: fab env.unset {name}, then {set_hint(name)}")
    found: list[EnvVar | Missing | None] = [_declared_plain(cfg, store, n, v) for n, v in cfg.app.env]
    found += [_declared_secret(cfg, store, i, ssm) for i in range(len(cfg.app.secrets))]
    extra = sorted((store.plain.keys() | store.secrets.keys()) - kinds.keys())
    found += [EnvVar(n, store.secrets[n], True, "fab env.set --secret") if n in store.secrets
              else EnvVar(n, store.plain[n], False, "fab env.set") for n in extra]
    return [e for e in found if e is not None]


def resolve(cfg: Config, store: Store | None = None, ssm: Callable[[], Any] | None = None) -> list[EnvVar]:
    """The app's own variables; EnvError naming each declared secret without a value."""
    found = entries(cfg, load_store(cfg) if store is None else store, ssm)
    missing = [e.message for e in found if isinstance(e, Missing)]
    if missing:
        raise EnvError("\n".join(missing))
    return [e for e in found if isinstance(e, EnvVar)]


def values(variables: Iterable[EnvVar]) -> dict[str, str]:
    """NAME -> value, for shared/.env."""
    return {v.name: v.value for v in variables}


MASK_MIN = 4      # shorter secret values are not searched for in text: masking "x" would garble every line


def secret_values(variables: Iterable[EnvVar]) -> list[str]:
    """The secret values to mask in any text (`vault.mask`): a second guard, no line is meant to hold one."""
    return [v.value for v in variables if v.secret and len(v.value) >= MASK_MIN]


