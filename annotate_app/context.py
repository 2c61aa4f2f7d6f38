"""What every page needs: the config, the database, and who is signed in.

``prefloop app`` passes its options through the environment (``PREFLOOP_CONFIG``, ``PREFLOOP_SET``,
``PREFLOOP_DB``), so the same script also runs under ``streamlit run`` and ``AppTest``. Nothing here
imports the training or generation stack: the Annotate page must render within ~3 s of process start.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import streamlit as st
from sqlalchemy import Engine

from core.config import Config, load_config
from storage.models import Role

ENV_CONFIG = "PREFLOOP_CONFIG"  # path of a YAML config file
ENV_SET = "PREFLOOP_SET"  # JSON list of "section.key=value" overrides
ENV_SCHEMA_READY = "PREFLOOP_SCHEMA_READY"  # a database URL `prefloop app` has just migrated
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")  # server.allowedHosts of a loopback-only server
_USER_KEY = "prefloop_user"


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: Role
    token_hash: str | None = None  # as at sign-in: a new token (rotate) or none (revoke) ends this session
    session_epoch: int = 0  # as at sign-in: sign-out anywhere, revoke and rotate bump it
    local: bool = False  # signed in without a token (localhost, annotate.allow_local_user)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin


@st.cache_resource(show_spinner=False)
def _config(path: str | None, overrides: str, db: str | None) -> Config:
    return load_config(path, json.loads(overrides) if overrides else [], db)


def config() -> Config:
    # PREFLOOP_DB is part of the cache key: one process (AppTest) may serve several databases in turn
    env = os.environ
    return _config(env.get(ENV_CONFIG) or None, env.get(ENV_SET, ""), env.get("PREFLOOP_DB"))


@st.cache_resource(show_spinner=False)
def _engine(url: str | None) -> Engine:
    from storage.db import make_engine, migrate

    engine = make_engine(url)
    if os.environ.get(ENV_SCHEMA_READY) != url:
        migrate(engine)
    return engine


def engine() -> Engine:
    return _engine(config().db)


def _is_loopback_name(hostname: str | None) -> bool:
    if not hostname:
        return False
    if hostname.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def bound_to_localhost(address: str | None = None) -> bool:
    """True when the server only listens on a loopback address; an empty address means all interfaces."""
    address = st.get_option("server.address") if address is None else address
    return bool(address) and _is_loopback_name(address)


def loopback_request(headers: Mapping[str, str]) -> bool:
    """The browser asked for this machine by a loopback name (``Host``), from a loopback page (``Origin``,
    when sent). A hostile page that rebinds its own name to 127.0.0.1 sends its own name in both."""
    try:
        host = urlsplit(f"//{headers.get('Host', '')}").hostname
        origin = headers.get("Origin")
        origin_ok = origin is None or _is_loopback_name(urlsplit(origin).hostname)
    except ValueError:
        return False
    return _is_loopback_name(host) and origin_ok


def local_user_allowed() -> bool:
    """Token-free local admin: allowed by config, a loopback-only server, and a request that names it."""
    return (
        config().annotate.allow_local_user and bound_to_localhost() and loopback_request(st.context.headers)
    )


def current_user() -> User | None:
    return st.session_state.get(_USER_KEY)


def set_user(user: User | None) -> None:
    if user is None:
        st.session_state.pop(_USER_KEY, None)
    else:
        st.session_state[_USER_KEY] = user
