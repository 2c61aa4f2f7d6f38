"""Sign-in: a name and the token printed by ``prefloop annotators add``; the token is checked hashed.

On a loopback-only server with ``annotate.allow_local_user`` the operator works as the single local user
(an admin) without a token; the page says so. Bound to any other address, sign-in is mandatory.
"""

from __future__ import annotations

import streamlit as st

from annotate_app import session_cookie
from annotate_app.context import LOCAL_USER, User, config, current_user, engine, local_user_allowed, set_user
from storage.db import session_scope
from storage.models import Annotator, Role

_DECLINED_LOCAL = "prefloop_local_declined"
_COOKIE_SCRIPT = "prefloop_cookie_script"  # set or clear the session cookie on the next render


def _local_user() -> User:
    from storage.repo import get_or_create_annotator

    with session_scope(engine(), write=True) as session:
        row = get_or_create_annotator(session, LOCAL_USER, role=Role.admin)
        return User(id=row.id, name=row.name, role=row.role, local=True)


@st.cache_resource(show_spinner=False)
def _secret() -> bytes:
    return session_cookie.load_secret(config().var_dir / "app-secret")


def _sign_in(name: str, token: str) -> User | None:
    from storage.auth import authenticate

    with session_scope(engine()) as session:
        row = authenticate(session, name.strip(), token.strip())
        if row is None:
            return None
        st.session_state[_COOKIE_SCRIPT] = session_cookie.set_cookie_script(
            session_cookie.sign(_secret(), row.id, row.token_hash)
        )
        return User(id=row.id, name=row.name, role=row.role)


def _from_cookie() -> User | None:
    """Resume after a reload: the signed cookie names an annotator whose token is unchanged."""
    value = st.context.cookies.get(session_cookie.COOKIE_NAME)
    annotator_id = session_cookie.annotator_id_of(value) if value else None
    if annotator_id is None:
        return None
    with session_scope(engine()) as session:
        row = session.get(Annotator, annotator_id)
        if row is None or not session_cookie.verify(_secret(), value, row.token_hash):
            return None
        return User(id=row.id, name=row.name, role=row.role)


def ensure_user() -> User | None:
    """The signed-in user: this session's, else the session cookie's, else on an allowed localhost
    server the local user (unless they signed out)."""
    user = current_user()
    if user is None and not st.session_state.get(_DECLINED_LOCAL):
        user = _from_cookie()
        if user is None and local_user_allowed():
            user = _local_user()
        set_user(user)
    return user


def sign_out() -> None:
    st.session_state[_DECLINED_LOCAL] = True
    st.session_state[_COOKIE_SCRIPT] = session_cookie.clear_cookie_script()
    set_user(None)


def run_cookie_script() -> None:
    """Set or clear the session cookie in the browser (Streamlit cannot send Set-Cookie itself)."""
    script = st.session_state.pop(_COOKIE_SCRIPT, None)
    if script:
        st.html(script, unsafe_allow_javascript=True, width=1)


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
