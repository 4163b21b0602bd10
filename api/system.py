"""System: memory, machine and versions, and (administrators) the OS services' status, read with
the System page's own functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema

from api.auth import AdminKeyAuth
from api.errors import ERROR_CODES, Error
from core.memory import Memory, for_models, mlx_device_info
from nodes.status import supervisor_status
from servers.selectors import system_memory as newest_memory
from system import info
from system.views import service_context

router = Router(tags=["system"])


@dataclass(frozen=True)
class MemoryOut(Memory):
    """core.memory's figure as the pages show it, with what servers use and what models may."""

    used_by_servers: int
    recommended_for_models: int
    recommended_note: str


class MachineOut(Schema):
    processor: str
    operating_system: str
    python: str
    versions: dict[str, str]
    supervisor_running: bool
    supervisor_heartbeat_seconds: int | None


class ServiceOut(Schema):
    name: str
    label: str
    installed: bool
    loaded: bool
    running: bool | None
    pid: int | None
    detail: str


class ServicesOut(Schema):
    manager: str
    error: str | None
    services: list[ServiceOut]
    install_command: str


@router.get("/memory", response={200: MemoryOut, ERROR_CODES: Error}, summary="Memory")
def system_memory(request: HttpRequest) -> Any:
    memory = newest_memory()
    recommended = for_models(memory.total)
    return MemoryOut(
        **vars(memory),
        used_by_servers=info.servers_memory(),
        recommended_for_models=recommended.bytes,
        recommended_note=recommended.note,
    )


@router.get("/machine", response={200: MachineOut, ERROR_CODES: Error}, summary="Machine and versions")
def system_machine(request: HttpRequest) -> Any:
    supervisor = supervisor_status()
    return {
        "processor": info.processor(mlx_device_info()),
        "operating_system": info.operating_system(),
        "python": info.python_version(),
        "versions": info.package_versions(),
        "supervisor_running": supervisor.running,
        "supervisor_heartbeat_seconds": supervisor.heartbeat_seconds,
    }


@router.get(
    "/services",
    response={200: ServicesOut, ERROR_CODES: Error},
    auth=AdminKeyAuth(),
    summary="Service status (administrators)",
)
def system_services(request: HttpRequest) -> Any:
    context = service_context()
    return {
        "manager": context["service_manager"],
        "error": context.get("service_error"),
        "services": [{**vars(status), "path": None} for status in context.get("service_statuses", [])],
        "install_command": context["install_command"],
    }
