"""HTTP adapter of the dashboard: server-rendered pages under ``/`` and ``/ui``, JSON for polling.

:meth:`Dashboard.routes` is a list of plain Starlette routes that the update server puts in its
one route table (no catch-all mount, so routes added later are never shadowed). Reads go through
:mod:`queries`, changes through :mod:`actions`; this module only checks who may do what, parses
forms and renders templates.
Blocking database calls run in the thread pool.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import jinja2
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flotilla.updates.server import catalog, fleetlock_store
from flotilla.updates.server.dashboard import actions, queries
from flotilla.updates.server.dashboard.auth import (
    COOKIE,
    LOGIN_COOKIE,
    Sessions,
    Viewer,
    csrf_ok,
)
from flotilla.updates.server.dashboard.forms import (
    FormTooLargeError,
    parse_form,
    policy_from_form,
    version_from_form,
)
from flotilla.updates.server.oidc import OidcClient, OidcError, ProviderDownError

logger = logging.getLogger(__name__)

HERE = Path(str(resources.files("flotilla.updates.server.dashboard")))
POLL_SECONDS = 3
"""How often open pages ask for fresh numbers."""
MESSAGES = {
    "policy": "Policy saved.",
    "paused": "Updates paused.",
    "resumed": "Updates resumed.",
    "channel": "Channel updated.",
    "released": "Reboot lock released.",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

OIDC_COOKIE = "flotilla_oidc_state"
"""Binds a login in flight to the browser that started it (no login CSRF)."""

Handler = Callable[[Request], Awaitable[Response]]


class Dashboard:
    """The dashboard's routes over one engine and one token set."""

    engine: Engine
    """The server's database; set by :meth:`bind` when the server's lifespan has opened it."""

    def __init__(self, sessions: Sessions, oidc: OidcClient | None = None) -> None:
        self.sessions = sessions
        self.oidc = oidc
        """The OpenID Connect provider people log in with; None: tokens only."""
        self.trust_forwarded = False
        """Take login clients' addresses from X-Forwarded-For (set by the server)."""
        self.on_change: Callable[[], None] = lambda: None
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.globals.update(quote=quote, urlencode=urlencode, poll=POLL_SECONDS)
        self.has_chartjs = (HERE / "static" / "vendor" / "chart.umd.min.js").exists()

    def bind(self, engine: Engine, on_change: Callable[[], None] = lambda: None) -> None:
        """Use ``engine`` from now on; ``on_change`` runs after every action (cache refresh)."""
        self.engine = engine
        self.sessions.bind(engine)
        self.on_change = on_change

    # --- plumbing ------------------------------------------------------------------------------

    def render(
        self, request: Request, viewer: Viewer, name: str, code: int = 200, **ctx: Any
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(
            viewer=viewer,
            path=request.url.path,
            message=MESSAGES.get(request.query_params.get("done", ""), ""),
            has_chartjs=self.has_chartjs,
            **ctx,
        )
        return HTMLResponse(html, code, headers=SECURITY_HEADERS)

    def page(self, fn: Callable[[Request, Viewer], Awaitable[Response]]) -> Handler:
        """A page for logged-in readers; others go to the login form."""

        async def handler(request: Request) -> Response:
            viewer = await self.sessions.viewer(request)
            if not viewer.can_read:
                if viewer.bearer:
                    return self.error(request, viewer, 401, "Unknown token.")
                nxt = quote(
                    request.url.path + ("?" + request.url.query if request.url.query else "")
                )
                return RedirectResponse(f"/ui/login?next={nxt}", 303)
            try:
                return await fn(request, viewer)
            except catalog.NotFoundError as e:
                return self.error(request, viewer, 404, str(e))

        return handler

    def data(self, fn: Callable[[Request], Awaitable[Any]]) -> Handler:
        """JSON for the live parts of pages."""

        async def handler(request: Request) -> Response:
            if not (await self.sessions.viewer(request)).can_read:
                return JSONResponse({"detail": "log in first"}, 401)
            try:
                return JSONResponse(await fn(request), headers={"Cache-Control": "no-store"})
            except catalog.NotFoundError as e:
                return JSONResponse({"detail": str(e)}, 404)

        return handler

    def action(
        self, fn: Callable[[Request, Viewer, dict[str, str]], Awaitable[Response]]
    ) -> Handler:
        """A change: admin only, CSRF-checked, form size limited."""

        async def handler(request: Request) -> Response:
            viewer = await self.sessions.viewer(request)
            if not viewer.can_read:
                return self.error(request, viewer, 401, "Log in first.")
            if not viewer.can_act:
                return self.error(
                    request, viewer, 403, "Read-only: this login may look but not change things."
                )
            try:
                form = parse_form(await _body(request))
            except FormTooLargeError as e:
                return self.error(request, viewer, 413, str(e))
            if not csrf_ok(viewer, form.get("csrf", "")):
                return self.error(
                    request, viewer, 403, "The form expired or came from elsewhere; try again."
                )
            try:
                return await fn(request, viewer, form)
            except catalog.NotFoundError as e:
                return self.error(request, viewer, 404, str(e))
            finally:
                self.on_change()

        return handler

    def error(self, request: Request, viewer: Viewer, status: int, text: str) -> HTMLResponse:
        return self.render(request, viewer, "error.html", status, status=status, text=text)

    # --- login ---------------------------------------------------------------------------------

    async def login_form(self, request: Request, error: str = "", status: int = 200) -> Response:
        value, cookie = self.sessions.login_csrf()
        nxt = _safe_next(request.query_params.get("next", "/"))
        viewer = await self.sessions.viewer(request)
        resp = self.render(
            request, viewer, "login.html", status,
            csrf=value, next=nxt, error=error, oidc=self.oidc is not None,
        )  # fmt: skip
        resp.set_cookie(
            LOGIN_COOKIE, cookie, max_age=3600, httponly=True, samesite="strict",
            secure=request.url.scheme == "https", path="/ui/login",
        )  # fmt: skip
        return resp

    async def login(self, request: Request) -> Response:
        if not self.sessions.limiter.allow(client_address(request, self.trust_forwarded)):
            return await self.login_form(request, "Too many login attempts; wait a minute.", 429)
        try:
            form = parse_form(await _body(request))
        except FormTooLargeError:
            return await self.login_form(request, "The form is too large.", 413)
        if not self.sessions.login_csrf_ok(request, form.get("csrf", "")):
            return await self.login_form(request, "The form expired; try again.", 403)
        role, name = self.sessions.identify(form.get("token", "").strip())
        if not role:
            return await self.login_form(request, "Unknown token.", 401)
        resp = await self._logged_in(request, role, name, _safe_next(form.get("next", "/")))
        resp.delete_cookie(LOGIN_COOKIE, path="/ui/login")
        return resp

    async def _logged_in(self, request: Request, role: str, user: str, nxt: str) -> Response:
        """A new session for ``user``, its cookie set, on the way to ``nxt``."""
        resp = RedirectResponse(nxt, 303)
        session_id = await run_in_threadpool(self.sessions.new_session, role, None, user)
        max_age = int(self.sessions.max_age.total_seconds())
        resp.set_cookie(
            COOKIE, session_id, max_age=max_age, httponly=True,
            samesite="lax", secure=request.url.scheme == "https", path="/",
        )  # fmt: skip
        return resp

    async def oidc_start(self, request: Request) -> Response:
        """Send the browser to the provider (code flow, PKCE); the state goes in a cookie too."""
        if self.oidc is None:
            return await self.login_form(request, "OpenID Connect login is not configured.", 404)
        # Counted like token logins: each start holds a login in flight, and a flood of them
        # would push real people's logins out before they come back from the provider.
        if not self.sessions.limiter.allow(client_address(request, self.trust_forwarded)):
            return await self.login_form(request, "Too many login attempts; wait a minute.", 429)
        nxt = _safe_next(request.query_params.get("next", "/"))
        try:
            url = await run_in_threadpool(self.oidc.start, nxt)
        except OidcError as e:
            logger.warning("OIDC login cannot start: %s", e)
            return await self.login_form(
                request, f"The OpenID Connect provider cannot be used right now: {e}", 502
            )
        state = parse_qs(urlsplit(url).query).get("state", [""])[0]
        resp = RedirectResponse(url, 303)
        resp.set_cookie(
            OIDC_COOKIE, state, max_age=600, httponly=True, samesite="lax",
            secure=request.url.scheme == "https", path="/ui/oidc",
        )  # fmt: skip
        return resp

    async def oidc_callback(self, request: Request) -> Response:
        """The provider's answer: check the state against this browser's, finish, open a session."""
        if self.oidc is None:
            return await self.login_form(request, "OpenID Connect login is not configured.", 404)
        q = request.query_params
        if q.get("error"):
            text = f"{q.get('error', '')[:100]}: {q.get('error_description', '')[:300]}"
            return await self.login_form(request, f"The provider refused the login ({text}).", 403)
        state, code = q.get("state", ""), q.get("code", "")
        if not state or not code:
            return await self.login_form(
                request, "The provider's answer has no state or code.", 400
            )
        mine = request.cookies.get(OIDC_COOKIE, "")
        if not mine or not hmac.compare_digest(mine.encode(), state.encode()):
            return await self.login_form(
                request,
                "This login was not started in this browser, or it expired; log in again.",
                400,
            )
        try:
            person, nxt = await run_in_threadpool(self.oidc.finish, state, code)
        except ProviderDownError as e:
            logger.warning("OIDC login cannot finish: %s", e)
            return await self.login_form(
                request, f"The OpenID Connect provider cannot be reached: {e}", 502
            )
        except OidcError as e:
            logger.info("OIDC login refused: %s", e)
            return await self.login_form(request, f"Login refused: {e}", 403)
        logger.info("OIDC login: %s as %s", person.user, person.role)
        resp = await self._logged_in(request, person.role, person.user, _safe_next(nxt))
        resp.delete_cookie(OIDC_COOKIE, path="/ui/oidc")
        return resp

    async def logout(self, request: Request) -> Response:
        viewer = await self.sessions.viewer(request)
        try:
            form = parse_form(await _body(request))
        except FormTooLargeError as e:
            return self.error(request, viewer, 413, str(e))
        if viewer.role and not csrf_ok(viewer, form.get("csrf", "")):
            return self.error(request, viewer, 403, "The form expired; try again.")
        if viewer.role and not viewer.bearer:
            await run_in_threadpool(self.sessions.revoke, request.cookies.get(COOKIE, ""))
        resp = RedirectResponse("/ui/login", 303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # --- pages ---------------------------------------------------------------------------------

    async def apps(self, request: Request, viewer: Viewer) -> Response:
        rows = await run_in_threadpool(queries.app_summaries, self.engine)
        return self.render(request, viewer, "apps.html", apps=rows)

    async def _app_ctx(self, app_id: str) -> dict[str, Any]:
        def load() -> dict[str, Any]:
            return {
                "app_id": app_id,
                "app_name": queries.app_name(self.engine, app_id),
                "channels": catalog.list_channels(self.engine, app_id),
                "groups": catalog.list_groups(self.engine, app_id),
                "counts": queries.status_counts_by_group(self.engine, app_id),
                "versions": queries.versions(self.engine, app_id),
                "statuses": queries.STATUSES,
                "glance": queries.app_glance(self.engine, app_id),
                "confirm": None,
            }

        return await run_in_threadpool(load)

    async def app(self, request: Request, viewer: Viewer) -> Response:
        ctx = await self._app_ctx(request.path_params["app"])
        return self.render(request, viewer, "app.html", errors={}, **ctx)

    async def group(
        self,
        request: Request,
        viewer: Viewer,
        status: int = 200,
        errors: dict[str, str] | None = None,
        values: dict[str, Any] | None = None,
    ) -> Response:
        app_id, gid = request.path_params["app"], request.path_params["group"]
        period = request.query_params.get("period", "rollout")
        state = await run_in_threadpool(queries.group_state, self.engine, app_id, gid, period)
        name = await run_in_threadpool(queries.app_name, self.engine, app_id)
        policy = values if values is not None else state["group"]["policy"]
        return self.render(
            request, viewer, "group.html", status, app_id=app_id, app_name=name,
            s=state, policy=policy, errors=errors or {}, chart=_chart_json(state),
            periods=list(queries.PERIODS),
        )  # fmt: skip

    async def instances(self, request: Request, viewer: Viewer) -> Response:
        app_id, gid = request.path_params["app"], request.path_params["group"]
        p = request.query_params
        g = await run_in_threadpool(catalog.get_group, self.engine, app_id, gid)
        args = {
            "q": p.get("q", "")[:100],
            "status": p.get("status", "") if p.get("status", "") in queries.STATUSES else "",
            "version": p.get("version", "")[:100],
            "sort": p.get("sort", "last_seen") if p.get("sort") in queries.SORTS else "last_seen",
            "order": "asc" if p.get("order") == "asc" else "desc",
        }
        page = _int(p.get("page", "1"), 1)
        result = await run_in_threadpool(
            lambda: queries.instance_page(
                self.engine, app_id, g["id"], q=args["q"], status=args["status"],
                version=args["version"], sort=args["sort"], order=args["order"], page=page,
            )
        )  # fmt: skip
        name = await run_in_threadpool(queries.app_name, self.engine, app_id)
        return self.render(
            request, viewer, "instances.html", app_id=app_id, app_name=name, g=g, result=result,
            args=args, statuses=queries.STATUSES,
        )  # fmt: skip

    async def instance(self, request: Request, viewer: Viewer) -> Response:
        app_id, machine = request.path_params["app"], request.path_params["machine"]
        inst = await run_in_threadpool(queries.instance_detail, self.engine, app_id, machine)
        names = await run_in_threadpool(queries.group_names, self.engine)
        name = await run_in_threadpool(queries.app_name, self.engine, app_id)
        return self.render(
            request, viewer, "instance.html", app_id=app_id, app_name=name, i=inst,
            group=names.get(inst["group_id"], (app_id, inst["group_id"]))[1],
        )  # fmt: skip

    async def activity(self, request: Request, viewer: Viewer) -> Response:
        before = request.query_params.get("before")
        sev = request.query_params.get("severity", "")
        sev = sev if sev in ("success", "info", "warning", "error") else ""
        rows = await run_in_threadpool(
            lambda: queries.activity_page(
                self.engine, before=_int(before, 0) if before else None, severity=sev
            )
        )
        names = await run_in_threadpool(queries.group_names, self.engine)
        return self.render(
            request, viewer, "activity.html", rows=rows, names=names, severity=sev,
            live=before is None,
        )  # fmt: skip

    async def reboots(self, request: Request, viewer: Viewer) -> Response:
        groups = await run_in_threadpool(fleetlock_store.list_groups, self.engine)
        holders = await run_in_threadpool(fleetlock_store.list_holders, self.engine)
        now = datetime.now(UTC)
        return self.render(
            request, viewer, "reboots.html",
            groups=[queries.lock_group_view(g, now) for g in groups],
            holders=[queries.lock_holder_view(h, now) for h in holders],
        )  # fmt: skip

    # --- actions -------------------------------------------------------------------------------

    async def save_policy(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        app_id, gid = request.path_params["app"], request.path_params["group"]
        policy, errors = policy_from_form(form)
        if errors:
            return await self.group(request, viewer, 422, errors, policy)
        await run_in_threadpool(actions.set_policy, self.engine, app_id, gid, policy, viewer.user)
        return _back(request, "policy")

    async def pause(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        await run_in_threadpool(
            actions.pause,
            self.engine,
            request.path_params["app"],
            request.path_params["group"],
            viewer.user,
        )
        return _back(request, "paused")

    async def resume(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        await run_in_threadpool(
            actions.resume,
            self.engine,
            request.path_params["app"],
            request.path_params["group"],
            viewer.user,
        )
        return _back(request, "resumed")

    async def set_channel(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        app_id, name = request.path_params["app"], request.path_params["channel"]
        allowed = await run_in_threadpool(queries.versions, self.engine, app_id)
        version, err = version_from_form(form.get("package", ""), allowed)
        if err is not None or version is None:
            ctx = await self._app_ctx(app_id)
            return self.render(
                request, viewer, "app.html", 422, errors={name: err or "invalid"}, **ctx
            )
        older = await run_in_threadpool(
            actions.older_than_channel, self.engine, app_id, name, version
        )
        if older is not None and form.get("confirm") != "downgrade":
            ctx = await self._app_ctx(app_id)
            ctx["confirm"] = {"channel": name, "from": older, "to": version}
            return self.render(request, viewer, "app.html", 409, errors={}, **ctx)
        await run_in_threadpool(
            actions.set_channel_package, self.engine, app_id, name, version, viewer.user
        )
        return RedirectResponse(f"/ui/apps/{quote(app_id)}?done=channel", 303)

    async def release_lock(
        self, request: Request, viewer: Viewer, form: dict[str, str]
    ) -> Response:
        # The id exactly as the client sent it: any id a holder used can be released here.
        group, holder = form.get("group", "").strip(), form.get("id", "")
        if not group or not holder:
            return self.error(request, viewer, 422, "A group and a machine id are required.")
        dropped = await run_in_threadpool(
            lambda: fleetlock_store.release_stale(
                self.engine, group=group, node_id=holder, now=datetime.now(UTC)
            )
        )
        if not dropped:
            return self.error(request, viewer, 404, f"{holder} holds no lock in {group}.")
        await run_in_threadpool(
            actions.log_lock_release, self.engine, "", group, holder, viewer.user
        )
        return RedirectResponse("/ui/reboots?done=released", 303)

    # --- live data -----------------------------------------------------------------------------

    async def group_data(self, request: Request) -> Any:
        state = await run_in_threadpool(
            lambda: queries.group_state(
                self.engine, request.path_params["app"], request.path_params["group"],
                request.query_params.get("period", "rollout"), full=False,
            )
        )  # fmt: skip
        return {
            **_chart_json(state),
            "status": state["numbers"]["status"],
            "total": state["numbers"]["total"],
            "on_target": state["on_target"],
            "halted": state["group"]["halted_version"],
            "enabled": state["group"]["policy"]["updates_enabled"],
            "recent": state["recent"],
            "glance": state["glance"],
        }

    async def app_data(self, request: Request) -> Any:
        return await run_in_threadpool(
            queries.status_counts_by_group, self.engine, request.path_params["app"]
        )

    async def activity_data(self, request: Request) -> Any:
        after = _int(request.query_params.get("after", "0"), 0)
        rows = await run_in_threadpool(
            lambda: queries.activity_page(self.engine, after=after, limit=100)
        )
        names = await run_in_threadpool(queries.group_names, self.engine)
        for r in rows:
            app_id, name = names.get(r["group_id"] or "", ("", ""))
            r["group"] = name
            r["group_url"] = f"/ui/apps/{quote(app_id)}/groups/{r['group_id']}" if name else ""
        return {"rows": rows}

    # --- wiring --------------------------------------------------------------------------------

    def routes(self) -> list[Route | Mount]:
        """The dashboard's routes: ``/`` plus everything under ``/ui``."""
        g = "/apps/{app}/groups/{group}"
        ui = [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/oidc/start", self.oidc_start, methods=["GET"]),
            Route("/oidc/callback", self.oidc_callback, methods=["GET"]),
            Route("/apps/{app}", self.page(self.app)),
            Route(
                "/apps/{app}/channels/{channel}", self.action(self.set_channel), methods=["POST"]
            ),
            Route(g, self.page(self.group)),
            Route(g + "/policy", self.action(self.save_policy), methods=["POST"]),
            Route(g + "/pause", self.action(self.pause), methods=["POST"]),
            Route(g + "/resume", self.action(self.resume), methods=["POST"]),
            Route(g + "/instances", self.page(self.instances)),
            Route("/apps/{app}/instances/{machine}", self.page(self.instance)),
            Route("/activity", self.page(self.activity)),
            Route("/reboots", self.page(self.reboots)),
            Route("/reboots/release", self.action(self.release_lock), methods=["POST"]),
            Route("/data" + g, self.data(self.group_data)),
            Route("/data/apps/{app}", self.data(self.app_data)),
            Route("/data/activity", self.data(self.activity_data)),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="dashboard-static"),
        ]
        return [Route("/", self.page(self.apps)), Mount("/ui", routes=ui)]


def _chart_json(state: dict[str, Any]) -> dict[str, Any]:
    prog: queries.Progress = state["progress"]
    return {
        "versions": state["numbers"]["versions"][:12],
        "progress": {
            "version": prog.version,
            "labels": prog.labels,
            "series": prog.series,
            "times": prog.times,
            "period": prog.period,
            "versions": state["versions_over_time"],
        },
    }


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > 64 * 1024:
        raise FormTooLargeError("form larger than 65536 bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > 64 * 1024:
            raise FormTooLargeError("form larger than 65536 bytes")
    return body


def _int(raw: str | None, default: int) -> int:
    """A query parameter as an integer that fits a BIGINT; ``default`` when it is none."""
    try:
        value = int((raw or "")[:30])
    except ValueError:
        return default
    return max(-(2**63) + 1, min(value, 2**63 - 1))


def client_address(request: Request, trust_forwarded: bool) -> str:
    """The client's address: the proxy's own X-Forwarded-For entry when trusted, else the peer."""
    if trust_forwarded:
        fwd = request.headers.get("x-forwarded-for", "")
        if fwd:
            return fwd.split(",")[-1].strip()[:64]
    return request.client.host if request.client else ""


def _safe_next(raw: str) -> str:
    """Only same-site paths: never ``//host`` or ``https://...`` (an open redirect)."""
    if not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    return raw


def _back(request: Request, done: str) -> Response:
    app_id, gid = request.path_params["app"], request.path_params["group"]
    return RedirectResponse(f"/ui/apps/{quote(app_id)}/groups/{quote(gid)}?done={done}", 303)
