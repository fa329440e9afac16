"""The admin API: start and list faults (`/admin/faults`), end them (`/admin/recover`).

Routed only when an admin token is configured (without one the endpoints do not exist: 404); every
call must carry the token (`grid.live.security.check_admin`). The faults themselves are
`grid.live.fault_control.FaultController`'s.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request

from grid.live.fault_control import FaultController
from grid.live.security import check_admin

log = logging.getLogger(__name__)


def add_admin_routes(app: FastAPI, controller: FaultController, token: str) -> None:
    """Route the admin endpoints on `app`, guarded by `token`."""

    @app.post("/admin/faults", include_in_schema=False)
    async def admin_fault(request: Request):
        check_admin(request.headers, token)
        record = controller.apply(controller.parse(await request.body()))
        log.warning("admin: fault %d (%s) started", record.id, record.kind)
        return {"fault": controller.to_dict(record)}

    @app.get("/admin/faults", include_in_schema=False)
    async def admin_faults(request: Request):
        check_admin(request.headers, token)
        history = [controller.to_dict(f) for f in controller.history]
        return {"active": [f for f in history if f["active"]], "history": history}

    @app.post("/admin/recover", include_in_schema=False)
    async def admin_recover(request: Request):
        check_admin(request.headers, token)
        zone = controller.parse_recover(await request.body())
        ended = controller.recover(zone)
        tasks = [f.task for f in ended if f.task is not None]
        if tasks:  # let the ends take effect (a restore is one actor call)
            await asyncio.wait(tasks, timeout=5.0)
        return {"recovered": [controller.to_dict(f) for f in ended]}
