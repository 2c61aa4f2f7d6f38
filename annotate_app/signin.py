"""Sign-in: a name and the token printed by ``prefloop annotators add``; the token is checked hashed.

On a loopback-only server with ``annotate.allow_local_user`` the operator works as the single local user
(an admin) without a token, when the browser asked for the server by a loopback name; the page says so.
Bound to any other address, sign-in is mandatory. Every rerun re-reads the signed-in annotator, so a new
role applies at the next click and a revoked, rotated or signed-out session ends there.
"""

from __future__ import annotations

import streamlit as st

from annotate_app import session_cookie
from annotate_app.context import User, config, current_user, engine, local_user_allowed, set_user
from storage.auth import LOCAL_USER, SignInGate, SignInRefused, end_sessions
from storage.db import session_scope
from storage.models import Annotator, AnnotatorKind, Role

_DECLINED_LOCAL = "prefloop_local_declined"
_COOKIE_SCRIPT = "prefloop_cookie_script"  # set or clear the session cookie on the next render
_ENDED = "prefloop_session_ended"  # why this page was signed out (shown on the sign-in page)


def _user(row: Annotator, local: bool = False) -> User:
    return User(row.id, row.name, row.role, row.token_hash, row.session_epoch, local=local)


def _local_user() -> User | None:
    from storage.repo import get_or_create_annotator

    with session_scope(engine(), write=True) as session:
        row = get_or_create_annotator(session, LOCAL_USER, role=Role.admin)
        if row.kind != AnnotatorKind.human or row.token_hash:
            return None  # a database from before the name was reserved: never hand that row admin rights
        return _user(row, local=True)


@st.cache_resource(show_spinner=False)
def _secret() -> bytes:
    return session_cookie.load_secret(config().var_dir / "app-secret")


@st.cache_resource(show_spinner=False)
def _gate() -> SignInGate:
    return SignInGate()


def _client() -> str:
    """Who is knocking, for the back-off: the first proxy hop's client if behind one, else the peer."""
    forwarded = st.context.headers.get("X-Forwarded-For")
    return forwarded.split(",")[0].strip() if forwarded else (st.context.ip_address or "unknown")


def _sign_in(name: str, token: str) -> User | SignInRefused:
    with session_scope(engine()) as session:
        row = _gate().check(session, name.strip(), token.strip(), _client())
        if isinstance(row, SignInRefused):
            return row
        st.session_state[_COOKIE_SCRIPT] = session_cookie.set_cookie_script(
            session_cookie.sign(_secret(), row.id, row.token_hash, row.session_epoch)
        )
        return _user(row)


def _from_cookie() -> User | None:
    """Resume after a reload: the signed cookie names an annotator whose token and epoch are unchanged."""
    value = st.context.cookies.get(session_cookie.COOKIE_NAME)
    annotator_id = session_cookie.annotator_id_of(value) if value else None
    if annotator_id is None:
        return None
    with session_scope(engine()) as session:
        row = session.get(Annotator, annotator_id)
        if row is None or not session_cookie.verify(_secret(), value, row.token_hash, row.session_epoch):
            return None
        return _user(row)


def _recheck(user: User) -> User | None:
    """This session's user as the database has them now, or None when the session has ended."""
    with session_scope(engine()) as session:
        row = session.get(Annotator, user.id)
        if row is None or row.session_epoch != user.session_epoch:
            return None
        if user.local:
            return _user(row, local=True) if local_user_allowed() else None
        return _user(row) if row.token_hash and row.token_hash == user.token_hash else None


def ensure_user() -> User | None:
    """The signed-in user, checked again on every rerun: this session's, else the session cookie's, else
    on an allowed localhost server the local user (unless they signed out)."""
    user = current_user()
    if user is not None:
        user = _recheck(user)
        if user is None:
            st.session_state[_ENDED] = "Your session has ended (signed out, or your access changed)."
            st.session_state[_COOKIE_SCRIPT] = session_cookie.clear_cookie_script()
    declined = st.session_state.get(
        _DECLINED_LOCAL, st.context.cookies.get(session_cookie.LOCAL_DECLINED_COOKIE) == "1"
    )
    if user is None and not declined:
        user = _from_cookie()
        if user is None and local_user_allowed():
            user = _local_user()
    set_user(user)
    return user


def sign_out() -> None:
    """Ends this annotator's sessions server-side: a copy of the cookie stops working too."""
    user = current_user()
    if user is not None:
        with session_scope(engine(), write=True) as session:
            end_sessions(session, user.id)
    st.session_state[_DECLINED_LOCAL] = True
    st.session_state[_COOKIE_SCRIPT] = session_cookie.clear_cookie_script() + (
        session_cookie.local_declined_script(True) if local_user_allowed() else ""
    )
    st.session_state.pop(_ENDED, None)
    set_user(None)


def run_cookie_script() -> None:
    """Set or clear the session cookie in the browser (Streamlit cannot send Set-Cookie itself)."""
    script = st.session_state.pop(_COOKIE_SCRIPT, None)
    if script:
        st.html(script, unsafe_allow_javascript=True, width=1)


def continue_as_local() -> None:
    st.session_state[_DECLINED_LOCAL] = False
    st.session_state[_COOKIE_SCRIPT] = session_cookie.local_declined_script(False)


def render_sign_in() -> None:
    """The sign-in page (the only page until someone signs in)."""
    st.title("Sign in")
    if ended := st.session_state.pop(_ENDED, None):
        st.warning(ended)
    with st.form("sign_in", enter_to_submit=True):
        name = st.text_input("Name", key="signin_name")
        token = st.text_input("Token", type="password", key="signin_token")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if not name.strip():
            st.error("Enter your name: the one the operator added you as.")
        elif not token.strip():
            st.error("Enter your token: the operator printed it with `prefloop annotators add NAME`.")
        else:
            result = _sign_in(name, token)
            if isinstance(result, SignInRefused):
                st.error(result.message)
            else:
                set_user(result)
                st.rerun()
    if local_user_allowed():
        st.caption("This server listens on localhost only, so the operator may also work without a token.")
        st.button(f"Continue as the local user ({LOCAL_USER})", on_click=continue_as_local)
    else:
        st.caption(
            "Sign-in is required: this server is reachable from other machines, was not opened by a "
            "localhost address, or local use is off."
        )


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
