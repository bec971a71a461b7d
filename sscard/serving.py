"""Serving a WSGI app in production: gunicorn, with TLS and mutual TLS, for every service;
granian, likewise, for the CA's OCSP responder and (``--server granian``) its API.

``sscard ca serve``, ``sscard kmc serve``, ``sscard ra serve`` and ``sscard gateway serve`` all
take the same options (``serve_options``) and hand ``run`` a factory that builds their Flask
app. gunicorn calls the factory in each worker after the fork, so database connections, key
handles and HSM sessions are never shared between processes; whatever the workers must share
(a session-cookie key, unsealed shares) the command reads once, before, in the master.

The TLS key may be encrypted: its passphrase comes from a file (``--tls-key-passphrase-file``),
never from argv. The TLS context is built and checked once before serving (a wrong passphrase
or a key that does not match the certificate ends the command with that message) and once per
worker (gunicorn would otherwise rebuild it for every connection).

``run_granian`` serves an app under granian (a Rust HTTP server with a WSGI interface) instead,
with the same options, TLS and mutual TLS included: ``sscard ca ocsp-serve`` uses it, because
for OCSP the server was the cost (the same app answered nonce POSTs 2.2 times and cached GETs
4.1 times as fast as under gunicorn; docs/performance.md), and ``sscard ca serve --server
granian`` for the API. granian reads an unencrypted PKCS#8 key file only (it fails on an
encrypted EC key, and on SEC1), so the master decrypts the key once, as for gunicorn, and hands
the workers PKCS#8 in an anonymous memory file (``memfd``): never written to disk, rewritten on
SIGHUP so that a renewed certificate and key are served without a restart. ``serve_with`` picks
one of the two by name (``SERVERS``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sscard.secrets_input import read_secret

if TYPE_CHECKING:
    import ssl  # loaded by the functions that serve: commands that only declare options skip it

F = TypeVar("F", bound=Callable[..., Any])
WsgiApp = Callable[..., Any]

_FILE = click.Path(dir_okay=False, path_type=Path)


class ServeError(Exception):
    """The serving options are unusable (TLS files, passphrase, combinations)."""


@dataclass(frozen=True)
class ServeOptions:
    """Where and how a service listens. ``tls_key_passphrase`` is kept out of ``repr``."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 4
    timeout: int = 60
    graceful_timeout: int = 30
    keepalive: int = 5
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_key_passphrase: bytes | None = field(default=None, repr=False)
    tls_client_ca: Path | None = None

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ServeError("--tls-cert and --tls-key go together")
        if self.tls_cert is None and (self.tls_client_ca or self.tls_key_passphrase):
            raise ServeError("--tls-client-ca and --tls-key-passphrase-file need --tls-cert "
                             "and --tls-key")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def address(self) -> str:
        """``host:port`` as gunicorn binds it (an IPv6 address in brackets)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") \
            else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}"


def tls_context(options: ServeOptions) -> ssl.SSLContext:
    """The server-side TLS context: certificate chain, key (decrypted with the passphrase),
    and with a client CA, client certificates required and verified against it."""
    import ssl

    if options.tls_cert is None or options.tls_key is None:
        raise ServeError("TLS is not configured")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_key_pair(context, options.tls_cert, options.tls_key, options.tls_key_passphrase,
                  "--tls-key-passphrase-file")
    if options.tls_client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(options.tls_client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ServeError(f"TLS: cannot load client CA {options.tls_client_ca}: "
                             f"{exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def load_key_pair(context: ssl.SSLContext, certificate: Path, key: Path,
                  passphrase: bytes | None, passphrase_option: str) -> None:
    """Load a certificate (its chain may follow) and its key into ``context``, the key
    decrypted with ``passphrase``; a ``ServeError`` naming the files and the likely cause
    (``passphrase_option`` is the option that gives the passphrase). For the server's
    identity and for a service's TLS client identity (sscard.tls_client) alike."""
    import ssl

    # a callable, never None: OpenSSL would otherwise prompt on the terminal for an
    # encrypted key (and hang a service started by systemd)
    secret = passphrase or b""
    try:
        context.load_cert_chain(str(certificate), str(key), password=lambda: secret)
    except FileNotFoundError as exc:
        raise ServeError(f"TLS: cannot read {exc.filename}: {exc.strerror}") from None
    except (ssl.SSLError, OSError) as exc:
        hint = ("wrong passphrase, a key that does not match, or not PEM" if passphrase else
                f"an encrypted key needs {passphrase_option}; else a key that does not "
                "match, or not PEM")
        raise ServeError(f"TLS: cannot use certificate {certificate} with key {key} ({hint}): "
                         f"{getattr(exc, 'reason', None) or exc}") from None


def run(factory: Callable[[], WsgiApp], options: ServeOptions, *, name: str) -> None:
    """Serve the app that ``factory`` builds (in each worker) under gunicorn until stopped."""
    import ssl

    from gunicorn.app.base import BaseApplication

    if options.tls:
        tls_context(options)  # fail here, with the reason, rather than in every worker
    worker_context: list[ssl.SSLContext] = []  # one per process, made after the fork

    def ssl_context_hook(_config: Any, _default: Callable[[], ssl.SSLContext]
                         ) -> ssl.SSLContext:
        if not worker_context:
            worker_context.append(tls_context(options))
        return worker_context[0]

    class Application(BaseApplication):
        def load_config(self) -> None:
            settings: dict[str, Any] = {
                "bind": options.address,
                "workers": options.workers,
                "worker_class": "gthread",
                "threads": options.threads,
                "timeout": options.timeout,
                "graceful_timeout": options.graceful_timeout,
                "keepalive": options.keepalive,
                # each worker binds its own SO_REUSEPORT socket and the kernel spreads new
                # connections over them; with one shared socket, long-lived keep-alive clients
                # (business systems, wrk) often all landed on one worker while the other idled
                "reuse_port": True,
                "proc_name": f"sscard-{name}",
                "accesslog": None,
                # no control socket (gunicorn >= 25.1 opens one by default): whoever runs as the
                # same user could stop or reconfigure the service through it, and services
                # sharing a user would take over each other's socket
                "control_socket_disable": True,
            }
            if options.tls:
                settings.update(certfile=str(options.tls_cert), keyfile=str(options.tls_key),
                                ssl_context=ssl_context_hook)
                if options.tls_client_ca is not None:
                    settings.update(ca_certs=str(options.tls_client_ca),
                                    cert_reqs=ssl.CERT_REQUIRED)
            for key, value in settings.items():
                if key in self.cfg.settings:  # control_socket_disable: gunicorn >= 25.1 only
                    self.cfg.set(key, value)

        def load(self) -> WsgiApp:
            return factory()  # in each worker, after the fork

    _warn_plain_http(options, name)
    logging.getLogger(__name__).info("serving %s at %s with %d workers", name, options.url,
                                      options.workers)
    Application().run()


def run_granian(factory: Callable[[], WsgiApp], options: ServeOptions, *, name: str,
                signed_answers: bool = False) -> None:
    """Serve the app that ``factory`` builds (in each worker process, after the fork) under
    granian, HTTP/1.1 (over TLS, with client certificates verified, when ``options`` say so),
    until SIGTERM or SIGINT: the workers then finish the requests they hold and stop (killed
    after ``graceful_timeout`` seconds if they do not). SIGHUP respawns the workers, which read
    the TLS files again. ``signed_answers``: plain HTTP is the protocol's own (OCSP), so a
    public address is not warned about."""
    from granian.constants import HTTPModes, Interfaces, SSLProtocols
    from granian.server import Server

    class _Server(Server):  # type: ignore[misc,valid-type]
        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            # A worker inherits this handler across the fork and keeps it until granian
            # installs the worker's own, after the app is built: a stop that came while a
            # worker was still opening the CA was swallowed there, and the worker killed only
            # after graceful_timeout. It holds no request yet: it may simply end.
            if os.getpid() != self.pid:
                os._exit(0)
            super().signal_handler_interrupt(*args, **kwargs)

        def signal_handler_reload(self, *args: Any, **kwargs: Any) -> None:
            # SIGHUP: the respawned workers read the certificate file again, and the key
            # from the memory file, which is rewritten from the key file first
            if tls_key is not None and os.getpid() == self.pid:
                try:
                    tls_key.write()
                except ServeError as exc:  # keep serving with the key the workers have
                    logging.getLogger(__name__).error("not reloaded: %s", exc)
                    return
            super().signal_handler_reload(*args, **kwargs)

    tls: dict[str, Any] = {}
    tls_key: _MemoryKey | None = None
    if options.tls:
        check_granian(options)
        tls_key = _MemoryKey(options)
        tls = {
            "ssl_cert": options.tls_cert,
            "ssl_key": tls_key.path,
            "ssl_protocol_min": SSLProtocols.tls12,  # as the gunicorn path (TLSv1_2)
        }
        if options.tls_client_ca is not None:
            tls.update(ssl_ca=options.tls_client_ca, ssl_client_verify=True)
    server = _Server(
        f"sscard-{name}",  # a label only: the app comes from target_loader
        address=options.host.strip("[]"),
        port=options.port,
        interface=Interfaces.WSGI,
        workers=options.workers,
        # Python threads per worker that run the app: one process per core is what scales
        # under the GIL; threads only cover a request that waits (the database, on a miss)
        blocking_threads=options.threads,
        http=HTTPModes.http1,
        websockets=False,
        log_access=False,
        workers_kill_timeout=options.graceful_timeout,
        **tls,
    )
    if signed_answers:
        logging.getLogger(__name__).info("%s serves plain HTTP on %s (its answers are signed)",
                                          name, options.host)
    else:
        _warn_plain_http(options, name)
    logging.getLogger(__name__).info("serving %s at %s with %d granian workers", name,
                                      options.url, options.workers)
    server.serve(target_loader=factory, wrap_loader=False)


#: the production servers ``serve_with`` knows, the default first
SERVERS = ("gunicorn", "granian")


def serve_with(server: str, factory: Callable[[], WsgiApp], options: ServeOptions, *,
               name: str) -> None:
    """Serve under ``server`` (one of ``SERVERS``): the same app, options and checks."""
    if server == "granian":
        run_granian(factory, options, name=name)
    elif server == "gunicorn":
        run(factory, options, name=name)
    else:
        raise ServeError(f"unknown server {server!r} (one of {', '.join(SERVERS)})")


def check_granian(options: ServeOptions) -> None:
    """A ``ServeError`` for options granian cannot serve, before anything is opened: the TLS
    files and passphrase as for gunicorn, and a key the master could not hand over."""
    if options.tls:
        tls_context(options)
        _MemoryKey(options).close()


class _FdPath(type(Path())):  # type: ignore[misc]
    """A ``/proc/<pid>/fd/<n>`` path that stays one: granian resolves the key's path before
    opening it, and a memory file's link resolves to ``/memfd:... (deleted)``, which cannot
    be opened by name."""

    def resolve(self, strict: bool = False) -> _FdPath:
        return self


class _MemoryKey:
    """The TLS key, decrypted, as unencrypted PKCS#8 in an anonymous memory file that granian's
    workers (forked from this process) open by ``path``: granian takes a key file only, and
    cannot read an encrypted EC key or a SEC1 one. Only this user's processes can open it,
    as they could read the decrypted key from gunicorn's memory."""

    def __init__(self, options: ServeOptions) -> None:
        assert options.tls_key is not None
        self.key = options.tls_key
        self.passphrase = options.tls_key_passphrase
        self.fd = os.memfd_create("sscard-tls-key", 0)  # inherited by the forked workers
        self.path = _FdPath(f"/proc/{os.getpid()}/fd/{self.fd}")
        try:
            self.write()
        except ServeError:
            self.close()
            raise

    def write(self) -> None:
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_private_key(self.key.read_bytes(), self.passphrase)
        except (OSError, ValueError, TypeError) as exc:
            raise ServeError(f"TLS: cannot read key {self.key}: {exc}") from None
        pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, pkcs8, 0)

    def close(self) -> None:
        os.close(self.fd)


def _warn_plain_http(options: ServeOptions, name: str) -> None:
    if not options.tls and not _loopback(options.host):
        logging.getLogger(__name__).warning(
            "%s serves plain HTTP on %s: only behind a TLS-terminating proxy (else give "
            "--tls-cert and --tls-key)", name, options.host)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def serve_options(default_port: int) -> Callable[[F], F]:
    """The listening options every ``serve`` command takes; the command gets ``serving``
    (a ``ServeOptions``) instead of the separate values."""

    def decorate(func: F) -> F:
        import functools

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # the [server] extra, missing: said before anything is read or opened
            import gunicorn.app.base  # noqa: F401

            passphrase_file = kwargs.pop("tls_key_passphrase_file")
            values = {k: kwargs.pop(k) for k in (
                "host", "port", "workers", "threads", "timeout", "tls_cert", "tls_key",
                "tls_client_ca")}
            passphrase = (read_secret(file=passphrase_file, prompt="TLS key passphrase")
                          if passphrase_file is not None else None)
            try:
                kwargs["serving"] = ServeOptions(tls_key_passphrase=passphrase, **values)
                if kwargs["serving"].tls:
                    tls_context(kwargs["serving"])  # checked before the service opens
            except ServeError as exc:
                raise click.UsageError(str(exc)) from None
            return func(*args, **kwargs)

        options = [
            click.option("--host", default="127.0.0.1", show_default=True,
                         help="Address to listen on (0.0.0.0 behind a reverse proxy)."),
            click.option("--port", type=click.IntRange(1, 65535), default=default_port,
                         show_default=True, help="TCP port to listen on."),
            click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
                         help="Worker processes (gunicorn, or granian where offered)."),
            click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True,
                         help="Threads per worker process."),
            click.option("--timeout", type=click.IntRange(1, 3600), default=60,
                         show_default=True,
                         help="Seconds a worker may spend on a request before it is restarted."),
            click.option("--tls-cert", type=_FILE, default=None,
                         help="Server certificate PEM (its chain may follow): serve HTTPS."),
            click.option("--tls-key", type=_FILE, default=None,
                         help="Server private key PEM (may be encrypted)."),
            click.option("--tls-key-passphrase-file", type=_FILE, default=None,
                         help="File whose first line is the --tls-key passphrase."),
            click.option("--tls-client-ca", type=_FILE, default=None,
                         help="Require client certificates issued under these CA "
                              "certificates (mutual TLS)."),
        ]
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate
