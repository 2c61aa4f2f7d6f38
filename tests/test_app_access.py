"""The token-free local admin: only for a request that names a loopback host (DNS rebinding)."""

from __future__ import annotations

import pytest

from annotate_app.context import loopback_request


@pytest.mark.parametrize(
    ("headers", "local"),
    [
        ({"Host": "127.0.0.1:8501", "Origin": "http://127.0.0.1:8501"}, True),
        ({"Host": "localhost:8501", "Origin": "http://localhost:8501"}, True),
        ({"Host": "[::1]:8501"}, True),
        ({"Host": "attacker.example:8501", "Origin": "http://attacker.example:8501"}, False),
        ({"Host": "127.0.0.1:8501", "Origin": "http://attacker.example:8501"}, False),
        ({"Host": "127.0.0.1.attacker.example:8501"}, False),
        ({"Host": "[::1"}, False),
        ({}, False),
    ],
)
def test_only_a_request_naming_a_loopback_host_is_local(headers, local):
    assert loopback_request(headers) is local
