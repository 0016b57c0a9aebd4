"""`bulkex serve` as a real process: TLS (wss://) with a certificate of its own, an order placed
over it, then SIGTERM: the process stops gracefully (exit 0, no writer left behind) and what it
acknowledged is in the journal when the exchange opens again."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from api._client import Client
from api._keys import create_key
from exchange import Sequencer, Settings, load_instruments

ROOT = Path(__file__).resolve().parent.parent
PEPPER = "test-pepper-serve-process"


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, as an operator would make one)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the TLS test: openssl is not installed")
        pytest.skip("openssl is not installed")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_serve_over_tls_then_sigterm_stops_gracefully_and_keeps_what_it_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _certificate(tmp_path)
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    port = _free_port()
    monkeypatch.setenv("BULKEX_API_KEY_PEPPER", PEPPER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BULKEX_API_KEY_PEPPER": PEPPER}
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--demo", "--no-simulate", "--database-url", url,
         "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output: list[str] = []
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 120
        while not any("bulkex listening on" in line for line in output):
            assert time.monotonic() < deadline, "the server did not start:\n" + "".join(output)
            line = server.stdout.readline()
            assert line, "the server exited:\n" + "".join(output)
            output.append(line)
        listening = next(line for line in output if "bulkex listening on" in line)
        assert f"wss://127.0.0.1:{port}" in listening, listening
        writers = _children(server.pid)
        assert writers, "the writer runs in a process of its own"

        from api._demo_setup import DEMO_ACCOUNTS

        key_id, secret = create_key(url, "trader", DEMO_ACCOUNTS[0], "tls test")
        instrument = load_instruments(Settings().instruments_file)[0]
        price = instrument.ticks_to_price(instrument.reference_price_ticks)
        context = ssl.create_default_context(cafile=str(cert))

        async def trade() -> dict[str, Any]:
            async with Client(f"wss://127.0.0.1:{port}", key_id, secret, ssl_context=context) as client:
                return await client.place_order(instrument.symbol, "buy", price, 1)

        answer = asyncio.run(trade())
        assert answer["status"] in ("open", "filled"), answer
        plain = ssl.create_default_context()  # no trust in this certificate: the handshake fails

        async def untrusted() -> None:
            async with Client(f"wss://127.0.0.1:{port}", key_id, secret, ssl_context=plain):
                pass

        with pytest.raises(ssl.SSLCertVerificationError):
            asyncio.run(untrusted())

        server.send_signal(signal.SIGTERM)
        rest, _ = server.communicate(timeout=60)
        output.append(rest)
        assert server.returncode == 0, "".join(output)
        for pid in writers:
            assert not Path(f"/proc/{pid}").exists(), "the writer stopped with the server"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    sequencer = Sequencer(url)
    sequencer.open()
    try:
        assert sequencer.last_seq >= answer["seq"]
        order = sequencer.core.matching.orders.get(answer["order_id"])
        if answer["status"] == "open":
            assert order is not None, "the acknowledged order is in the book after the restart"
            assert order.account == DEMO_ACCOUNTS[0]
    finally:
        sequencer.close()
