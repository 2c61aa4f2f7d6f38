"""Who gets in, against the real server: DNS rebinding, copied cookies, revoked and demoted people,
and the cookie's Secure flag behind a TLS proxy."""

from __future__ import annotations

import base64
import os
import socket

import pytest
from playwright.sync_api import expect

from annotate_app import session_cookie
from storage.auth import revoke, set_role
from storage.db import session_scope
from storage.models import Role
from testkit.annotate_seed import seed_pairs
from testkit.app_server import CHROMIUM_ARGS, start_app, stop_app
from testkit.ui import TIMEOUT_MS, blur, press_and_wait_for_next, shown_pair, sign_in
from tests.e2e.conftest import chromium_or_skip

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def websocket_upgrade_status(port: int, host: str, origin: str) -> int:
    """The HTTP status a WebSocket upgrade to the app's stream gets with these Host and Origin headers."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /_stcore/stream HTTP/1.1\r\n"
        f"Host: {host}\r\nOrigin: {origin}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: streamlit\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request.encode())
        status_line = conn.recv(4096).split(b"\r\n", 1)[0].decode()
    return int(status_line.split()[1])


@pytest.fixture
def local_app(engine, sqlite_url):
    """`make run` mode: loopback, local user allowed."""
    seed_pairs(engine, train=2)
    proc, url = start_app(sqlite_url)
    try:
        yield url
    finally:
        stop_app(proc)


def test_a_rebound_hostname_gets_no_admin(local_app, browser):
    port = int(local_app.rsplit(":", 1)[1])
    attacker = f"attacker.example:{port}"
    assert websocket_upgrade_status(port, attacker, f"http://{attacker}") != 101
    assert websocket_upgrade_status(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}") == 101
    # the whole attack in a browser: the attacker's name resolves to 127.0.0.1
    rebinding = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP attacker.example 127.0.0.1"]
    hostile = browser.browser_type.launch(executable_path=chromium_or_skip(), headless=True, args=rebinding)
    page = hostile.new_page()
    page.goto(f"http://{attacker}/")
    page.wait_for_timeout(5000)
    assert page.get_by_text("Working as the local user").count() == 0
    assert page.get_by_role("link", name="Dashboard").count() == 0
    assert page.locator(".st-key-candidate_a").count() == 0
    hostile.close()


def test_a_copied_cookie_stops_working_after_sign_out(app, browser):
    seed_pairs(app.engine, train=3)
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, app.url, "alice", app.tokens["alice"])
    page.wait_for_function(f"document.cookie.includes('{session_cookie.COOKIE_NAME}=')", timeout=TIMEOUT_MS)
    copied = [c for c in context.cookies() if c["name"] == session_cookie.COOKIE_NAME]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Token")).to_be_visible(timeout=TIMEOUT_MS)
    thief = browser.new_context()
    thief.add_cookies(copied)
    stolen = thief.new_page()
    stolen.goto(app.url)
    expect(stolen.get_by_label("Token")).to_be_visible(timeout=TIMEOUT_MS)
    assert stolen.get_by_text("Signed in as alice").count() == 0
    context.close()
    thief.close()


def test_a_demoted_admin_loses_the_dashboard_at_the_next_click(app, browser):
    seed_pairs(app.engine, train=4)
    page = browser.new_page()
    sign_in(page, app.url, "root", app.tokens["root"])
    expect(page.get_by_role("link", name="Dashboard")).to_be_visible(timeout=TIMEOUT_MS)
    with session_scope(app.engine, write=True) as session:
        set_role(session, "root", Role.annotator)
    blur(page)
    shown_pair(page)
    page.wait_for_timeout(1200)
    press_and_wait_for_next(page, "3")
    expect(page.get_by_role("link", name="Dashboard")).to_have_count(0, timeout=TIMEOUT_MS)
    expect(page.get_by_text("Signed in as root (admin)")).to_have_count(0)
    page.goto(f"{app.url}/dashboard")
    expect(page.get_by_text("The Dashboard page is for admins only")).to_be_visible(timeout=TIMEOUT_MS)
    page.close()


def test_a_revoked_annotator_is_signed_out_at_the_next_click(app, browser):
    seed_pairs(app.engine, train=4)
    page = browser.new_page()
    sign_in(page, app.url, "bob", app.tokens["bob"])
    blur(page)
    shown_pair(page)
    page.wait_for_timeout(1200)
    with session_scope(app.engine, write=True) as session:
        revoke(session, "bob")
    page.keyboard.press("3")
    expect(page.get_by_text("Your session has ended")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_label("Token")).to_be_visible()
    page.close()


@pytest.mark.parametrize(("scheme", "secure"), [("https", True), ("http", False)])
def test_the_cookie_is_secure_exactly_when_the_page_came_over_https(browser, scheme, secure):
    """A TLS proxy in front: the browser sees https and the cookie the app sets carries ``Secure``."""
    context = browser.new_context()
    page = context.new_page()
    page.route(
        f"{scheme}://annotate.example/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<html><body></body></html>"),
    )
    page.goto(f"{scheme}://annotate.example/")
    script = session_cookie.set_cookie_script("7.123.abc")
    page.evaluate(script.removeprefix("<script>").removesuffix("</script>"))
    (cookie,) = context.cookies()
    assert (cookie["name"], cookie["value"], cookie["secure"]) == (
        session_cookie.COOKIE_NAME,
        "7.123.abc",
        secure,
    )
    assert cookie["sameSite"] == "Strict"
    context.close()
