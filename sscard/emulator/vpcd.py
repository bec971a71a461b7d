"""Attach an emulated card (or PSAM) to pcscd through vsmartcard's vpcd driver.

The driver listens on 127.0.0.1:35963 (the next slot on 35964, ...). Every message is a 2-byte
big-endian length and that many bytes. A 1-byte message from the driver is a control code
(00 power off, 01 power on, 02 reset, 04 get ATR); anything longer is a C-APDU, answered with
the R-APDU. Closing the connection is what pulling the card looks like to pcscd."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Protocol

log = logging.getLogger(__name__)

DEFAULT_PORT = 35963
POWER_OFF, POWER_ON, RESET, GET_ATR = 0x00, 0x01, 0x02, 0x04


class Device(Protocol):
    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> bytes: ...

    def power_off(self) -> None: ...

    def reset(self) -> bytes: ...

    def process(self, raw: bytes) -> bytes: ...


def _quick_ack(sock: socket.socket) -> None:
    # The driver writes the length and the payload separately; with delayed ACKs on our side
    # and Nagle's algorithm on its side each APDU would wait ~40 ms for the second write.
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < size:
        _quick_ack(sock)
        chunk = sock.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(len(payload).to_bytes(2, "big") + payload)


def connect(host: str, port: int, stop: threading.Event, retry_seconds: float = 0.2) -> \
        socket.socket | None:
    """Connect to the driver, retrying until it listens (pcscd may start after us)."""
    while not stop.is_set():
        try:
            sock = socket.create_connection((host, port), timeout=2)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(0.5)
            return sock
        except OSError:
            stop.wait(retry_seconds)
    return None


def serve(device: Device, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          stop: threading.Event | None = None, reconnect: bool = True) -> None:
    """Answer the driver until ``stop`` is set; reconnect if pcscd restarts."""
    stop = stop or threading.Event()
    while not stop.is_set():
        sock = connect(host, port, stop)
        if sock is None:
            return
        log.info("inserted into vpcd slot on port %d", port)
        try:
            _serve_connection(device, sock, stop)
        finally:
            sock.close()
            device.power_off()
        if not reconnect:
            return
        stop.wait(0.2)


def _serve_connection(device: Device, sock: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            header = _recv_exact(sock, 2)
        except TimeoutError:
            continue
        except OSError:
            return
        if header is None:
            return
        size = int.from_bytes(header, "big")
        sock.settimeout(5)
        try:
            payload = _recv_exact(sock, size)
        finally:
            sock.settimeout(0.5)
        if payload is None:
            return
        if size == 1:
            code = payload[0]
            if code == POWER_OFF:
                device.power_off()
            elif code == POWER_ON:
                device.power_on()
            elif code == RESET:
                device.reset()
            elif code == GET_ATR:
                _send(sock, device.atr)
            continue
        try:
            answer = device.process(payload)
        except ConnectionAbortedError:  # the device was pulled: drop the connection
            return
        _send(sock, answer)
