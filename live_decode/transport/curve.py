"""CURVE keys: authentication and encryption for sockets reachable from the network.

A key set (``live-decode keys DIR``) is laid out as::

    DIR/server.key  DIR/server.key_secret         the binding side's pair
    DIR/client.key  DIR/client.key_secret         a connecting side's pair
    DIR/authorized_clients/client.key             public keys the server accepts

The server side runs one ZAP handler (:class:`zmq.auth.thread.ThreadAuthenticator`) per context,
shared by its CURVE sockets, that admits only the public keys found in ``authorized_clients``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from live_decode.errors import ConfigError

log = logging.getLogger("live_decode.transport")

SERVER_NAME: Final = "server"
CLIENT_NAME: Final = "client"
AUTHORIZED_DIR: Final = "authorized_clients"


@dataclass(frozen=True)
class KeyPair:
    """A CURVE key pair, both keys Z85-encoded (40 bytes each)."""

    public: bytes
    secret: bytes


@dataclass(frozen=True)
class ServerKeys:
    """The binding side: its key pair and the directory of client public keys it accepts."""

    keypair: KeyPair
    authorized_clients: Path


@dataclass(frozen=True)
class ClientKeys:
    """The connecting side: its key pair and the public key of the server it trusts."""

    keypair: KeyPair
    server_public: bytes


def generate_keypair(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``name.key`` (public) and ``name.key_secret`` (mode 0600) into ``directory``.

    Returns
    -------
    tuple of Path
        (public key file, secret key file).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(directory, name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def generate_key_set(directory: str | Path) -> Path:
    """Create a server pair, a client pair, and authorize the client (layout in the module doc).

    Returns
    -------
    Path
        ``directory``. Copy ``client.key_secret`` and ``server.key`` to the connecting machine.
    """
    directory = Path(directory)
    if (directory / f"{SERVER_NAME}.key_secret").exists():
        raise ConfigError(f"{directory} already holds keys; remove them or choose another folder")
    generate_keypair(directory, SERVER_NAME)
    client_public, _ = generate_keypair(directory, CLIENT_NAME)
    (directory / AUTHORIZED_DIR).mkdir(exist_ok=True)
    shutil.copy(client_public, directory / AUTHORIZED_DIR / client_public.name)
    return directory


def load_keypair(secret_file: str | Path) -> KeyPair:
    """Read a ``*.key_secret`` file written by :func:`generate_keypair`.

    Raises
    ------
    ConfigError
        If the file is missing or holds no secret key.
    """
    path = Path(secret_file)
    if not path.is_file():
        raise ConfigError(
            f"{path}: CURVE secret key file not found (create keys: live-decode keys)"
        )
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{path}: not a CURVE key file: {exc}") from None
    if public is None or secret is None:
        raise ConfigError(f"{path}: holds no secret key (use the .key_secret file)")
    return KeyPair(public=public, secret=secret)


def load_public_key(public_file: str | Path) -> bytes:
    """Read the public key from a ``*.key`` (or ``*.key_secret``) file."""
    path = Path(public_file)
    if not path.is_file():
        raise ConfigError(f"{path}: CURVE public key file not found")
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{path}: not a CURVE key file: {exc}") from None
    if public is None:
        raise ConfigError(f"{path}: holds no public key")
    return public


def server_keys(directory: str | Path) -> ServerKeys:
    """The server side of a key set made by :func:`generate_key_set`."""
    directory = Path(directory)
    return ServerKeys(
        keypair=load_keypair(directory / f"{SERVER_NAME}.key_secret"),
        authorized_clients=directory / AUTHORIZED_DIR,
    )


def client_keys(directory: str | Path, name: str = CLIENT_NAME) -> ClientKeys:
    """The client side of a key set: ``name.key_secret`` and the server's ``server.key``."""
    directory = Path(directory)
    return ClientKeys(
        keypair=load_keypair(directory / f"{name}.key_secret"),
        server_public=load_public_key(directory / f"{SERVER_NAME}.key"),
    )


def apply_server_keys(socket: zmq.Socket[bytes], keys: ServerKeys) -> None:
    """Make ``socket`` a CURVE server (set before bind)."""
    socket.setsockopt(zmq.CURVE_SERVER, 1)
    socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.keypair.public)
    socket.setsockopt(zmq.CURVE_SECRETKEY, keys.keypair.secret)


def apply_client_keys(socket: zmq.Socket[bytes], keys: ClientKeys) -> None:
    """Make ``socket`` a CURVE client of the server with ``keys.server_public`` (before connect)."""
    socket.setsockopt(zmq.CURVE_PUBLICKEY, keys.keypair.public)
    socket.setsockopt(zmq.CURVE_SECRETKEY, keys.keypair.secret)
    socket.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)


# --------------------------------------------------------------------------- ZAP handler registry
# libzmq allows one ZAP handler per context; sockets share it and the last one out stops it
# (a running handler would make context.term() hang).
@dataclass
class _Registration:
    authenticator: ThreadAuthenticator
    authorized_clients: Path
    users: int


_registry: dict[int, _Registration] = {}
_registry_lock = threading.Lock()


def acquire_authenticator(context: zmq.Context[zmq.Socket[bytes]], authorized: Path) -> None:
    """Start (or share) the context's ZAP handler admitting the public keys in ``authorized``.

    Keys are read once, now: restart the server after adding a client key.

    Raises
    ------
    ConfigError
        If ``authorized`` holds no ``*.key`` file, or the context already authorizes another folder.
    """
    authorized = Path(authorized).resolve()
    with _registry_lock:
        current = _registry.get(id(context))
        if current is not None:
            if current.authorized_clients != authorized:
                raise ConfigError(
                    f"this process already authorizes clients from {current.authorized_clients}; "
                    f"use one authorized_clients folder per process, not also {authorized}"
                )
            current.users += 1
            return
        keys = sorted(authorized.glob("*.key")) if authorized.is_dir() else []
        if not keys:
            raise ConfigError(
                f"{authorized}: no authorized client public keys (*.key). Copy each client's "
                "public key file there (`live-decode keys DIR` authorizes its own client)."
            )
        authenticator = ThreadAuthenticator(context, log=log.getChild("auth"))
        authenticator.start()
        authenticator.configure_curve(domain="*", location=authorized)
        _registry[id(context)] = _Registration(authenticator, authorized, users=1)
        log.info("CURVE: accepting %d client key(s) from %s", len(keys), authorized)


def release_authenticator(context: zmq.Context[zmq.Socket[bytes]]) -> None:
    """Drop one user of the context's ZAP handler; the last one stops it."""
    with _registry_lock:
        current = _registry.get(id(context))
        if current is None:
            return
        current.users -= 1
        if current.users == 0:
            current.authenticator.stop()
            del _registry[id(context)]
