"""Sign-in: a name and the token printed by ``prefloop annotators add``; the token is checked hashed.

On a loopback-only server with ``annotate.allow_local_user`` the operator works as the single local user
(an admin) without a token; the page says so. Bound to any other address, sign-in is mandatory.
"""

from __future__ import annotations

import streamlit as st

from annotate_app.context import LOCAL_USER, User, current_user, engine, local_user_allowed, set_user
from storage.db import session_scope
from storage.models import Role

_DECLINED_LOCAL = "prefloop_local_declined"


def _local_user() -> User:
    from storage.repo import get_or_create_annotator

    with session_scope(engine(), write=True) as session:
        row = get_or_create_annotator(session, LOCAL_USER, role=Role.admin)
        return User(id=row.id, name=row.name, role=row.role, local=True)


def _sign_in(name: str, token: str) -> User | None:
    from storage.auth import authenticate

    with session_scope(engine()) as session:
        row = authenticate(session, name.strip(), token.strip())
        return None if row is None else User(id=row.id, name=row.name, role=row.role)


def ensure_user() -> User | None:
    """The signed-in user; on an allowed localhost server, the local user unless they signed out."""
    user = current_user()
    if user is None and local_user_allowed() and not st.session_state.get(_DECLINED_LOCAL):
        user = _local_user()
        set_user(user)
    return user


def sign_out() -> None:
    st.session_state[_DECLINED_LOCAL] = True
    set_user(None)


def continue_as_local() -> None:
    st.session_state[_DECLINED_LOCAL] = False


def render_sign_in() -> None:
    """The sign-in page (the only page until someone signs in)."""
    st.title("Sign in")
    with st.form("sign_in", enter_to_submit=True):
        name = st.text_input("Name", key="signin_name")
        token = st.text_input("Token", type="password", key="signin_token")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        user = _sign_in(name, token) if name.strip() and token.strip() else None
        if user is None:
            st.error(
                "Unknown name or wrong token. Ask the operator for a token (`prefloop annotators add NAME`)."
            )
        else:
            set_user(user)
            st.rerun()
    if local_user_allowed():
        st.caption("This server listens on localhost only, so the operator may also work without a token.")
        st.button(f"Continue as the local user ({LOCAL_USER})", on_click=continue_as_local)
    else:
        st.caption("Sign-in is required: this server is reachable from other machines (or local use is off).")


def render_user_badge(user: User) -> None:
    """Sidebar: who is signed in, how, and a way out."""
    with st.sidebar:
        if user.local:
            st.info(
                "Working as the local user (admin) without a token: the server listens on localhost "
                "only and `annotate.allow_local_user` is on."
            )
        else:
            st.text(f"Signed in as {user.name}" + (" (admin)" if user.is_admin else ""))
        st.button("Sign out", on_click=sign_out, key="sign_out")
