"""One function of a SAM template, served on loopback as API Gateway and Lambda would serve it: a pool of
execution environments behind the local HTTP API, both configured from the template.

    api = LocalApi(Path("template.yaml"), "HelloFunction")
    api.environment["GREETING"] = "hi"  # the function's variables, as the template resolves them; change freely
    api.start(jwt_issuer="http://127.0.0.1:9000")  # then http://127.0.0.1:{api.port}
    ...
    api.stop()

It knows the template, the function's logical id and its handler; which resources exist, and what the function's
variables should say locally, are for its caller to decide (`physical_names`, `environment`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Self

from local_stack.core.gateway import INTEGRATION_TIMEOUT_SECONDS, Cors, LocalHttpApi, Route, routes_from_template
from local_stack.core.jwt_authorizer import JwtAuthorizer, JwtConfiguration
from local_stack.core.template import function_settings, load_template
from local_stack.core.workers import ChildProcesses, WorkerPool, execution_environment

# serve_forever() notices shutdown() between polls: a short poll keeps stop() quick.
_POLL_INTERVAL_SECONDS = 0.05


class LocalApi:
    def __init__(
        self,
        template_path: Path,
        function: str,
        *,
        handler: str | None = None,
        physical_names: Mapping[str, str] | None = None,
    ) -> None:
        """Read the function with logical id `function` from the template at `template_path`. Its handler is the
        template's unless `handler` ("module.function") is given; its code is imported from its CodeUri (relative
        to the template), as Lambda imports it from /var/task. A `!Ref` to a resource in its settings takes the
        local name `physical_names` gives it."""
        self.template_path = Path(template_path).resolve()
        self.template = load_template(self.template_path)
        self.function = function
        settings = function_settings(self.template, function, physical_names)
        self.environment: dict[str, str] = settings.environment
        self.handler = handler or settings.handler
        if not self.handler:
            raise ValueError(f"{function} names no handler: give one")
        self.timeout_seconds = settings.timeout_seconds
        self.memory_mb = settings.memory_mb
        self.code_dir = self.template_path.parent / settings.code_uri
        self.routes: list[Route] = routes_from_template(self.template, function)
        self._pool: WorkerPool | None = None
        self._gateway: LocalHttpApi | None = None

    def start(
        self,
        *,
        port: int = 0,
        concurrency: int = 1,
        function_name: str | None = None,
        timeout_seconds: float | None = None,
        cors_allowed_origins: Sequence[str] | None = None,
        jwt_issuer: str | None = None,
        jwt_audiences: Sequence[str] | None = None,
        integration_timeout: float = INTEGRATION_TIMEOUT_SECONDS,
        log: IO[str] | None = None,
        processes: ChildProcesses | None = None,
    ) -> Self:
        """Start `concurrency` execution environments, then listen on 127.0.0.1:`port` (0: any free port) once they
        are ready. Each environment gets our environment, the function's variables over it, and the variables
        Lambda sets (its name, `function_name` or the logical id, and its memory); its timeout is the template's
        unless `timeout_seconds` is given. CORS is the function's API's, with `cors_allowed_origins` instead of the
        configured origins when given. Routes behind the API's JWT authorizer are checked as it checks them, with
        `jwt_issuer` and `jwt_audiences` instead of its configured issuer and audiences when given (one that does
        not resolve locally must be given). `log` receives the function's logs (by default, our stderr). The
        environments are started through `processes` when given."""
        if self._gateway is not None:
            raise RuntimeError("already started")
        env = execution_environment(
            self.environment, function_name=function_name or self.function, memory_mb=self.memory_mb
        )
        apis = {route.api for route in self.routes if route.api}
        authorizer = None
        if any(route.jwt_protected for route in self.routes):
            configuration = JwtConfiguration.from_template(
                self.template, api=min(apis) if apis else None, issuer=jwt_issuer, audiences=jwt_audiences
            )
            if configuration is None:
                raise ValueError(f"{self.function} has routes behind a JWT authorizer its API does not configure")
            authorizer = JwtAuthorizer(configuration)
        try:
            self._pool = WorkerPool(
                concurrency,
                self.handler,
                env,
                timeout_seconds or self.timeout_seconds,
                code_dir=self.code_dir,
                log=log,
                processes=processes,
            )
            cors = (
                Cors.from_template(self.template, api=min(apis), allow_origins=cors_allowed_origins) if apis else None
            )
            self._gateway = LocalHttpApi(
                port,
                self.routes,
                self._pool.invoke,
                cors=cors,
                authorizer=authorizer,
                integration_timeout=integration_timeout,
            )
        except BaseException:
            self.stop()
            raise
        threading.Thread(
            target=self._gateway.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_SECONDS},
            name="local-http-api",
            daemon=True,
        ).start()
        return self

    @property
    def port(self) -> int:
        if self._gateway is None:
            raise RuntimeError("not started")
        return self._gateway.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pids(self) -> list[int]:
        """The execution environments' process ids."""
        return self._pool.pids if self._pool else []

    def stop(self) -> None:
        if self._gateway:
            self._gateway.shutdown()
            self._gateway.server_close()
            self._gateway = None
        if self._pool:
            self._pool.stop()
            self._pool = None

    def __enter__(self) -> Self:
        return self.start() if self._gateway is None else self

    def __exit__(self, *_: object) -> None:
        self.stop()
