"""Inline S3 secrets in a config (`secretKeyEncrypted`): Fernet with Airflow's key."""

from __future__ import annotations

from edgeloop.errors import ConfigError


def _fernet():
    from airflow.sdk.crypto import get_fernet

    fernet = get_fernet()
    if not getattr(fernet, "is_encrypted", False):
        raise ConfigError(
            "Airflow has no fernet key, so secrets cannot be encrypted; set "
            "AIRFLOW__CORE__FERNET_KEY (or [core] fernet_key in airflow.cfg)"
        )
    return fernet


def encrypt_secret(secret: str) -> str:
    if not secret:
        raise ConfigError("the secret is empty")
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str, *, file: str | None = None, path: str | None = None) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ConfigError(
            "cannot decrypt with Airflow's fernet key (encrypted with another key?); make a new "
            "token with `edgeloop encrypt-secret`",
            file=file,
            path=path,
        ) from exc
