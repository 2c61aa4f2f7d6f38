"""Admin-only pages check the role themselves, so opening their URL directly is refused too."""

from __future__ import annotations

import streamlit as st

from annotate_app.context import current_user


def require_admin(page: str) -> None:
    user = current_user()
    if user is None or not user.is_admin:
        st.error(f"The {page} page is for admins only. Ask the operator if you need access.")
        st.stop()
