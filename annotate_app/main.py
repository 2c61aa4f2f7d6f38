"""prefloop's annotation app (``prefloop app``): sign-in, then Annotate, and for admins Dashboard and Compare.

Streamlit reruns this file on every interaction; it only routes. Tables live in ``storage.models``
(imported, never defined here) so reruns never redefine them.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from annotate_app import annotate_page
from annotate_app.signin import ensure_user, render_sign_in, render_user_badge, run_cookie_script


def review() -> None:
    from annotate_app import review_page

    review_page.render()


def dashboard() -> None:
    from annotate_app import dashboard_page  # pandas and the statistics: only when an admin asks

    dashboard_page.render()


def compare() -> None:
    from annotate_app import compare_page

    compare_page.render_page()


# A file, not ":material/...": Streamlit fetches a material-icon favicon from fonts.gstatic.com, which
# fails offline (ERR_NAME_NOT_RESOLVED) and is a request the annotators' browsers need not make.
FAVICON = Path(__file__).with_name("favicon.png")

st.set_page_config(page_title="prefloop", page_icon=str(FAVICON), layout="wide")

user = ensure_user()
run_cookie_script()
if user is None:
    pages = [st.Page(render_sign_in, title="Sign in", url_path="signin", default=True)]
else:
    render_user_badge(user)
    # Admin pages are listed for admins; for others they stay reachable by URL but only say "refused".
    visibility = "visible" if user.is_admin else "hidden"
    pages = [
        st.Page(
            annotate_page.render,
            title="Annotate",
            icon=":material/rate_review:",
            url_path="annotate",
            default=True,
        ),
        st.Page(review, title="My work", icon=":material/history:", url_path="review"),
        st.Page(
            dashboard,
            title="Dashboard",
            icon=":material/monitoring:",
            url_path="dashboard",
            visibility=visibility,
        ),
        st.Page(
            compare,
            title="Compare",
            icon=":material/compare:",
            url_path="compare",
            visibility=visibility,
        ),
    ]
st.navigation(pages).run()
