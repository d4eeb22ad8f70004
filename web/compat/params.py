"""Reading another service's request parameters: booleans and closed choices, refused by name."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from matteflow.core.errors import shown

from ..errors import ApiError

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


def flag(params: Mapping[str, str], name: str, code: str) -> bool:
    """``params[name]`` as a boolean (false when absent); 400 ``code`` for anything else."""
    value = params.get(name, "false").strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ApiError(400, code, f"{name} must be true or false, got {shown(value)}")


def choice(params: Mapping[str, str], name: str, allowed: Collection[str], default: str, code: str) -> str:
    """``params[name]`` (lower case) when it is one of ``allowed``, else 400 ``code`` naming the choices."""
    value = params.get(name, default).strip().lower()
    if value not in allowed:
        raise ApiError(400, code, f"{name} must be one of {', '.join(allowed)}, got {shown(value)}")
    return value


def refuse_unknown(params: Collection[str], known: Collection[str], service: str) -> None:
    """400 ``unknown_parameter`` naming every parameter the service does not have."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        names = ", ".join(shown(name) for name in unknown)
        raise ApiError(400, "unknown_parameter", f"unknown {service} parameter(s): {names}")
