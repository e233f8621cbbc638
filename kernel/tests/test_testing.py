"""The test helpers themselves (isengard.testing), where their behaviour is not obvious from a test using them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from isengard.testing import ServerProcess


def test_a_chosen_port_taken_meanwhile_is_replaced(tmp_path: Path) -> None:
    """Several test workers pick free ports at once: one may bind a port another just chose for a server."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        server = ServerProcess(tmp_path / "chosen")
        server.config["HttpPort"] = taken  # as if free_port() had answered it, then someone bound it
        try:
            server.start()
            assert server.config["HttpPort"] != taken
            assert server.get("/system").status_code == 200
        finally:
            server.stop()
        given = ServerProcess(tmp_path / "given", {"HttpPort": taken})  # a port the test asked for: no retry
        with pytest.raises(RuntimeError, match="Address already in use"):
            given.start()
        given.stop()
