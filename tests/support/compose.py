"""docker-compose.yml as compose reads it, without docker: variable interpolation, published ports,
the Dockerfile's stages. Used by tests/e2e/test_compose.py and tests/e2e/test_image.py."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    """A ``${NAME:?message}`` whose variable is unset, or a malformed reference."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with ``$NAME``, ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?err}``,
    ``${NAME?err}``, ``${NAME:+alt}``, ``${NAME+alt}`` and ``$$`` resolved as Compose does (defaults may
    nest)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("${", i):
            depth, j = 1, i + 2
            while j < len(text) and depth:
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth += {"{": 0, "}": -1}.get(text[j], 0)
                j += 1
            if depth:
                raise InterpolationError(f"unclosed ${{ in {text!r}")
            out.append(_braced(text[i + 2:j - 1], env))
            i = j
            continue
        match = _NAME.match(text, i + 1)
        if match is None:
            raise InterpolationError(f"invalid interpolation format in {text!r}")
        out.append(env.get(match.group(0), ""))
        i = match.end()
    return "".join(out)


def _braced(body: str, env: Mapping[str, str]) -> str:
    match = _NAME.match(body)
    if match is None:
        raise InterpolationError(f"invalid variable name in ${{{body}}}")
    name, rest = match.group(0), body[match.end():]
    value = env.get(name)
    if not rest:
        return value or ""
    for op in (":-", "-", ":?", "?", ":+", "+"):
        if rest.startswith(op):
            arg = rest[len(op):]
            unset_or_empty = value is None or (op.startswith(":") and value == "")
            if op in (":-", "-"):
                return interpolate(arg, env) if unset_or_empty else value or ""
            if op in (":?", "?"):
                if unset_or_empty:
                    raise InterpolationError(f"{name}: {interpolate(arg, env)}")
                return value or ""
            return "" if unset_or_empty else interpolate(arg, env)
    raise InterpolationError(f"invalid operator in ${{{body}}}")


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    """Every string value of a loaded YAML tree interpolated (keys are left as they are, as Compose does)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


@dataclass(frozen=True)
class Published:
    service: str
    host_ip: str
    host_port: int
    target: int
    protocol: str

    def collides(self, other: Published) -> bool:
        """Two bindings of one host port and protocol, on the same address or one of them on every address."""
        wildcard = {"", "0.0.0.0", "::"}
        same_ip = self.host_ip == other.host_ip or self.host_ip in wildcard or other.host_ip in wildcard
        return self.host_port == other.host_port and self.protocol == other.protocol and same_ip


def published_ports(services: Mapping[str, Any]) -> list[Published]:
    """The host ports each service publishes (short and long syntax, after interpolation)."""
    out: list[Published] = []
    for name, service in services.items():
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                if port.get("published") in (None, ""):
                    continue
                out.append(Published(name, str(port.get("host_ip", "")), int(port["published"]),
                                     int(port["target"]), str(port.get("protocol", "tcp"))))
                continue
            spec, _, protocol = str(port).partition("/")
            parts = spec.rsplit(":", 2)
            if len(parts) == 1:  # a container port only: docker picks a free host port
                continue
            host_ip = parts[0].strip("[]") if len(parts) == 3 else ""
            out.append(Published(name, host_ip, int(parts[-2]), int(parts[-1]), protocol or "tcp"))
    return out


def collisions(ports: list[Published]) -> list[tuple[Published, Published]]:
    return [(a, b) for i, a in enumerate(ports) for b in ports[i + 1:] if a.collides(b)]
