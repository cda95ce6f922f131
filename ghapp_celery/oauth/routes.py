"""The OAuth routes, with fastapi-githubapp 0.2.7's shapes, under the prefix (/auth/github).

- ``GET /login``: ``{"auth_url": ...}``; ``?redirect=true`` answers 302 to GitHub instead.
  ``?redirect_to=/next`` (allow-listed) is where the callback sends the browser afterwards.
- ``GET /callback``: ``{"user": {...}, "session_token": ...}`` plus the session cookie (or a
  303 to the ``redirect_to`` given at login, with the cookie).
- ``POST /logout``: ``{"status": "logged_out"}``; ``?revoke_grant=true`` also revokes the
  user's authorization of the app on GitHub.
- ``GET /user``: the session's claims.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ..store.errors import StoreUnavailable
from .crypto import LoginState
from .errors import LoginError, safe_code
from .hooks import Hooks
from .manager import STATE_COOKIE, OAuthManager

__all__ = ["build_router"]

LOG = logging.getLogger("ghapp_celery.oauth")


def build_router(
    manager: OAuthManager, hooks: Hooks, current_user: Callable[..., Any]
) -> APIRouter:
    router = APIRouter(tags=["oauth2"])
    prefix = manager.config.prefix
    options = manager.config.options

    def set_cookie(
        request: Request, response: Response, name: str, value: str, max_age: int, path: str
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=path,
            httponly=True,
            secure=secure(request),
            samesite="lax",
        )

    def clear_cookie(request: Request, response: Response, name: str, path: str) -> None:
        response.delete_cookie(
            name, path=path, httponly=True, secure=secure(request), samesite="lax"
        )

    def secure(request: Request) -> bool:
        return manager.config.secure_cookies(request.url.scheme, request.url.hostname)

    def failure(request: Request, error: LoginError) -> JSONResponse:
        # The state cookie goes; a session the browser already had is left alone, so a
        # forged callback link cannot log anybody out.
        response = JSONResponse(error.body(), status_code=error.status)
        clear_cookie(request, response, STATE_COOKIE, prefix or "/")
        return response

    @router.get("/login")
    async def oauth_login(
        request: Request,
        redirect: bool = False,
        redirect_to: str | None = None,
        scopes: str | None = None,
    ) -> Response:
        if redirect_to is not None and not manager.redirect_allowed(redirect_to):
            return failure(
                request, LoginError(400, "redirect_not_allowed", "Redirect target is not allowed")
            )
        login = LoginState(
            state=secrets.token_urlsafe(32),
            code_verifier=manager.flow.new_code_verifier(),
            redirect_to=redirect_to,
            redirect_uri=manager.config.redirect_uri,
        )
        scope_list = [s.strip() for s in scopes.split(",") if s.strip()] if scopes else None
        url = await manager.flow.authorization_url(
            state=login.state,
            code_verifier=login.code_verifier,
            redirect_uri=login.redirect_uri,
            scopes=scope_list,
        )
        response: Response = (
            RedirectResponse(url, status_code=302) if redirect else JSONResponse({"auth_url": url})
        )
        set_cookie(
            request,
            response,
            STATE_COOKIE,
            manager.sealer.seal(login),
            options.state_ttl,
            prefix or "/",
        )
        return response

    async def finish_login(
        request: Request, code: str | None, state: str | None, error: str | None
    ) -> Response:
        if error:
            code_ = safe_code(error)
            raise LoginError(400, code_, f"OAuth error: {code_}")
        if not code:
            raise LoginError(400, "missing_code", "Missing authorization code")
        if not state:
            raise LoginError(400, "missing_state", "Missing state parameter")
        sealed = request.cookies.get(STATE_COOKIE)
        login = manager.sealer.open(sealed) if sealed else None
        if login is None:
            if sealed is None and request.url.scheme == "http" and secure(request):
                # The likeliest cause on a developer's machine: say what to change.
                LOG.warning(
                    "OAuth callback without its state cookie over plain http: the cookie is "
                    "Secure, so a browser or test client only sends it over https. For local "
                    "plain-http work set GITHUBAPP_OAUTH_REDIRECT_URI to the http callback URL "
                    "or GITHUBAPP_OAUTH_COOKIE_SECURE=false (docs/oauth.md)"
                )
            raise LoginError(400, "invalid_state", "Login state missing or expired; sign in again")
        if not hmac.compare_digest(login.state.encode(), state.encode()):
            raise LoginError(400, "state_mismatch", "State does not match this browser's login")
        if not manager.consume_state(login.state):
            raise LoginError(400, "state_replayed", "This login was already completed")
        if login.redirect_to is not None and not manager.redirect_allowed(login.redirect_to):
            raise LoginError(400, "redirect_not_allowed", "Redirect target is not allowed")
        tokens = await manager.exchange(code, login.code_verifier, login.redirect_uri)
        user = await manager.fetch_user(tokens.access_token)
        session_token, claims = manager.start_session(user, tokens)
        try:
            await hooks.run_login(user, request)
        except HTTPException as exc:
            manager.abandon(claims)
            detail = exc.detail if isinstance(exc.detail, str) else "Login refused"
            raise LoginError(exc.status_code, "login_refused", detail) from None
        except Exception as exc:
            manager.abandon(claims)
            LOG.error("An on_login callback failed (%s)", type(exc).__name__)
            raise LoginError(500, "login_hook_failed", "Login could not be completed") from None
        LOG.info("GitHub user %s signed in", claims.get("login"))
        response: Response
        if login.redirect_to is not None:
            response = RedirectResponse(login.redirect_to, status_code=303)
        else:
            response = JSONResponse({"user": user, "session_token": session_token})
        clear_cookie(request, response, STATE_COOKIE, prefix or "/")
        set_cookie(
            request, response, manager.cookie_name, session_token, options.session_lifetime, "/"
        )
        return response

    @router.get("/callback")
    async def oauth_callback(
        request: Request,
        code: str | None = None,
        state: str | None = None,
        error: str | None = None,
    ) -> Response:
        try:
            return await finish_login(request, code, state, error)
        except LoginError as exc:
            return failure(request, exc)
        except StoreUnavailable:
            return failure(
                request, LoginError(503, "store_unavailable", "Session store unavailable")
            )

    @router.post("/logout")
    async def oauth_logout(request: Request, revoke_grant: bool = False) -> Response:
        claims: dict[str, Any] | None = None
        token = manager.token_from(request)
        if token:
            try:
                claims = manager.verify(token)
            except HTTPException as exc:
                if exc.status_code != 401:
                    raise
        body: dict[str, Any] = {"status": "logged_out"}
        if claims is not None:
            revoked = await manager.logout(claims, revoke_grant=revoke_grant)
            if revoke_grant:
                body["grant_revoked"] = revoked
            try:
                await hooks.run_logout(claims, request)
            except Exception as exc:  # the session is already gone; report, don't fail
                LOG.error("An on_logout callback failed (%s)", type(exc).__name__)
        response = JSONResponse(body)
        clear_cookie(request, response, manager.cookie_name, "/")
        return response

    @router.get("/user")
    async def oauth_user(current: dict[str, Any] = Depends(current_user)) -> dict[str, Any]:
        return current

    return router
