"""Loopback ports for the servers prefloop starts (vLLM, accelerate's rendezvous, the app in tests)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
