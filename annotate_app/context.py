"""What every page needs: the config, the database, and who is signed in.

``prefloop app`` passes its options through the environment (``PREFLOOP_CONFIG``, ``PREFLOOP_SET``,
``PREFLOOP_DB``), so the same script also runs under ``streamlit run`` and ``AppTest``. Nothing here
imports the training or generation stack: the Annotate page must render within ~3 s of process start.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass

import streamlit as st
from sqlalchemy import Engine

from core.config import Config, load_config
from storage.models import Role

ENV_CONFIG = "PREFLOOP_CONFIG"  # path of a YAML config file
ENV_SET = "PREFLOOP_SET"  # JSON list of "section.key=value" overrides
ENV_SCHEMA_READY = "PREFLOOP_SCHEMA_READY"  # a database URL `prefloop app` has just migrated
LOCAL_USER = "local"
_USER_KEY = "prefloop_user"


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: Role
    local: bool = False  # signed in without a token (localhost, annotate.allow_local_user)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin


@st.cache_resource(show_spinner=False)
def _config(path: str | None, overrides: str) -> Config:
    return load_config(path, json.loads(overrides) if overrides else [])


def config() -> Config:
    return _config(os.environ.get(ENV_CONFIG) or None, os.environ.get(ENV_SET, ""))


@st.cache_resource(show_spinner=False)
def _engine(url: str | None) -> Engine:
    from storage.db import make_engine, migrate

    engine = make_engine(url)
    if os.environ.get(ENV_SCHEMA_READY) != url:
        migrate(engine)
    return engine


def engine() -> Engine:
    from storage.db import database_url

    return _engine(database_url(config().db))


def bound_to_localhost(address: str | None = None) -> bool:
    """True when the server only listens on a loopback address; an empty address means all interfaces."""
    address = st.get_option("server.address") if address is None else address
    if not address:
        return False
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def local_user_allowed() -> bool:
    return config().annotate.allow_local_user and bound_to_localhost()


def current_user() -> User | None:
    return st.session_state.get(_USER_KEY)


def set_user(user: User | None) -> None:
    if user is None:
        st.session_state.pop(_USER_KEY, None)
    else:
        st.session_state[_USER_KEY] = user
