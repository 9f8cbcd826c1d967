"""The Edge API: every resource's routes on one Klein app."""
from pdserver.api.accounts import AccountsResource
from pdserver.api.audit import AuditResource
from pdserver.api.changes import ChangesResource
from pdserver.api.chute_logs import ChuteLogsResource
from pdserver.api.chutes import ChutesResource
from pdserver.api.config import ConfigResource
from pdserver.api.info import InfoResource
from pdserver.api.openapi import OpenApiResource
from pdserver.api.routing import Router


def build_router(*, settings, auth, queue, hostconfig_store, chutes, monitor, run_in_thread, clock,
                 started_at: float) -> Router:
    router = Router(auth, settings.max_body_bytes)
    for resource in (AccountsResource(auth), InfoResource(started_at, clock), ChangesResource(queue),
                     ChutesResource(queue, chutes, monitor, settings.chute_sources_dir, settings.max_upload_bytes,
                                    run_in_thread),
                     ChuteLogsResource(chutes, monitor),
                     ConfigResource(settings, queue, hostconfig_store), AuditResource(auth.audit),
                     OpenApiResource(router)):
        router.add(resource, type(resource).routes)
    return router
