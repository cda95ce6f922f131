"""OAuth settings: the 0.2.7 ones from the app's Settings, the new ones from GITHUBAPP_OAUTH_*.

``OAuthSettings`` holds only what fastapi-githubapp 0.2.7 did not have; ``resolve()`` lays it
over the app's Settings and answers with one ``OAuthConfig``, or with the names of what is
missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ..config import Settings, split_csv

__all__ = ["OAuthConfig", "OAuthSettings", "resolve"]

_DEFAULT_WEB_URL = "https://github.com"
_DEFAULT_API_URL = "https://api.github.com"
# The host Starlette's (and so FastAPI's) TestClient sends by default; no browser sends it.
TEST_CLIENT_HOST = "testserver"


class OAuthSettings(BaseSettings):
    """Options of the login flow beyond 0.2.7's; each is ``GITHUBAPP_OAUTH_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="GITHUBAPP_OAUTH_", extra="ignore")

    base_url: str = Field(
        default=_DEFAULT_WEB_URL,
        description="GitHub's web host (authorize and token endpoints).",
    )
    api_url: str | None = Field(
        default=None, description="REST API for /user; the app's GITHUBAPP_URL when unset."
    )
    session_lifetime: int = Field(default=86_400, gt=0, description="Session JWT lifetime (s).")
    cookie_name: str = "session_token"
    cookie_secure: bool | None = Field(
        default=None,
        description="Secure cookies: true or false; unset, Secure unless the login runs over "
        "plain http (see OAuthConfig.secure_cookies).",
    )
    state_ttl: int = Field(default=600, gt=0, description="Seconds a login may take.")
    redirect_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins (https://app.example.com) allowed as post-login redirect targets; "
        "relative paths on this app are always allowed.",
    )
    token_key: SecretStr | None = Field(
        default=None,
        description="Secret the stored GitHub tokens are encrypted with; derived from the "
        "session secret when unset.",
    )
    refresh_margin: int = Field(
        default=60, ge=0, description="Refresh a user token this many seconds early."
    )
    http_timeout: float = Field(default=10.0, gt=0)

    @field_validator("redirect_allowlist", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return split_csv(value)


@dataclass(frozen=True)
class OAuthConfig:
    """Everything the flow needs, resolved once at init_app."""

    client_id: str
    client_secret: str
    session_secret: str
    redirect_uri: str | None
    scopes: tuple[str, ...]
    prefix: str
    web_url: str
    api_url: str
    options: OAuthSettings

    def secure_cookies(self, scheme: str, host: str | None) -> bool:
        """Whether the state and session cookies of a request to ``scheme://host`` are Secure.

        ``GITHUBAPP_OAUTH_COOKIE_SECURE`` decides when set. Unset, they are Secure unless the
        login runs over plain http: a browser keeps a Secure cookie from, and sends it back
        over, https only, and so does httpx's cookie jar, so a Secure state cookie set on a
        plain-http ``/login`` never reaches ``/callback`` (400 ``invalid_state``). In order:

        - an https request: Secure;
        - plain http to FastAPI's TestClient host (``http://testserver``): not Secure, so a
          0.2.7 app's login test passes whatever redirect URI it configures;
        - a redirect URI is configured: Secure when it is https. It, not the request, says
          how browsers reach the app: behind a TLS-terminating proxy that sends neither the
          scheme nor the host on, the request reads ``http://127.0.0.1:8000`` in production;
        - no redirect URI: Secure (production stays safe; browsers that treat
          ``http://localhost`` as a secure context, Chrome and Firefox, accept it there).
        """
        if self.options.cookie_secure is not None:
            return self.options.cookie_secure
        if scheme == "https":
            return True
        if host == TEST_CLIENT_HOST:
            return False
        if self.redirect_uri:
            return urlsplit(self.redirect_uri).scheme == "https"
        return True

    @property
    def token_secret(self) -> str:
        key = self.options.token_key
        return key.get_secret_value() if key is not None else self.session_secret


def _secret(value: SecretStr | None) -> str | None:
    text = None if value is None else value.get_secret_value()
    return text or None


def resolve(settings: Settings, options: OAuthSettings | None = None) -> OAuthConfig | list[str]:
    """The OAuthConfig, or the names of the missing settings (empty list: switched off)."""
    if settings.enable_oauth is False:
        return []
    client_id = settings.oauth_client_id or None
    client_secret = _secret(settings.oauth_client_secret)
    session_secret = _secret(settings.oauth_session_secret)
    given = {
        "GITHUBAPP_OAUTH_CLIENT_ID": client_id,
        "GITHUBAPP_OAUTH_CLIENT_SECRET": client_secret,
        "GITHUBAPP_OAUTH_SESSION_SECRET": session_secret,
    }
    missing = [name for name, value in given.items() if value is None]
    if missing or client_id is None or client_secret is None or session_secret is None:
        return missing
    opts = options if options is not None else OAuthSettings()
    prefix = "/" + settings.oauth_routes_prefix.strip("/")
    return OAuthConfig(
        client_id=client_id,
        client_secret=client_secret,
        session_secret=session_secret,
        redirect_uri=settings.oauth_redirect_uri or None,
        scopes=tuple(settings.oauth_scopes or ()),
        prefix="" if prefix == "/" else prefix,
        web_url=opts.base_url.rstrip("/"),
        api_url=(opts.api_url or settings.url or _DEFAULT_API_URL).rstrip("/"),
        options=opts,
    )
