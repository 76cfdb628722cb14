"""CURVE key files and the shared ZAP handler."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq

from live_decode.errors import ConfigError
from live_decode.transport import curve
from live_decode.transport.sockets import open_socket

Ctx = zmq.Context[zmq.Socket[bytes]]


def test_key_set_layout_and_permissions(tmp_path: Path) -> None:
    curve.generate_key_set(tmp_path)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert names == [
        "authorized_clients/client.key",
        "client.key",
        "client.key_secret",
        "server.key",
        "server.key_secret",
    ]
    assert stat.S_IMODE((tmp_path / "server.key_secret").stat().st_mode) == 0o600
    server, client = curve.server_keys(tmp_path), curve.client_keys(tmp_path)
    assert client.server_public == server.keypair.public
    assert len(server.keypair.public) == len(server.keypair.secret) == 40
    with pytest.raises(ConfigError, match="already holds keys"):
        curve.generate_key_set(tmp_path)


def test_missing_or_public_only_key_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found.*live-decode keys"):
        curve.load_keypair(tmp_path / "nope.key_secret")
    public, _ = curve.generate_keypair(tmp_path, "alone")
    with pytest.raises(ConfigError, match="no secret key"):
        curve.load_keypair(public)
    (tmp_path / "junk.key").write_text("not a key\n")
    with pytest.raises(ConfigError, match=r"no public key|not a CURVE key"):
        curve.load_public_key(tmp_path / "junk.key")


def test_server_needs_at_least_one_authorized_client(ctx: Ctx, tmp_path: Path) -> None:
    curve.generate_keypair(tmp_path, "server")
    keys = curve.ServerKeys(curve.load_keypair(tmp_path / "server.key_secret"), tmp_path / "none")
    with pytest.raises(ConfigError, match="no authorized client public keys"):
        open_socket(ctx, zmq.PULL, "tcp://127.0.0.1:*", bind=True, curve=keys)


def test_sockets_share_one_authenticator_stopped_by_the_last(ctx: Ctx, tmp_path: Path) -> None:
    curve.generate_key_set(tmp_path)
    keys = curve.server_keys(tmp_path)
    first = open_socket(ctx, zmq.PULL, "tcp://127.0.0.1:*", bind=True, curve=keys)
    second = open_socket(ctx, zmq.PUB, "tcp://127.0.0.1:*", bind=True, curve=keys)
    registration = curve._registry[id(ctx)]
    assert registration.users == 2
    first.close()
    assert registration.authenticator.is_alive()
    second.close()
    assert not registration.authenticator.is_alive()
    assert id(ctx) not in curve._registry


def test_one_authorized_folder_per_context(ctx: Ctx, tmp_path: Path) -> None:
    curve.generate_key_set(tmp_path / "a")
    curve.generate_key_set(tmp_path / "b")
    first = open_socket(
        ctx, zmq.PULL, "tcp://127.0.0.1:*", bind=True, curve=curve.server_keys(tmp_path / "a")
    )
    try:
        with pytest.raises(ConfigError, match="one authorized_clients folder per process"):
            open_socket(
                ctx,
                zmq.PULL,
                "tcp://127.0.0.1:*",
                bind=True,
                curve=curve.server_keys(tmp_path / "b"),
            )
    finally:
        first.close()
