"""The "PostgreSQL" section of the configuration, with Orthanc's option names, read once into typed settings.

The kernel merges plugin defaults at the top level only, so a file that sets ``"PostgreSQL": {"EnableIndex":
true}`` replaces the whole section: the defaults below are applied again, option by option, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from isengard.config import Config, ConfigError

SECTION = "PostgreSQL"

DEFAULTS: dict[str, Any] = {
    "EnableIndex": False,
    "EnableStorage": False,
    "Host": "localhost",
    "Port": 5432,
    "Database": "orthanc",
    "Username": "orthanc",
    "Password": "",
    "ConnectionUri": "",
    "EnableSsl": False,
    "Lock": True,
    "MaximumConnectionRetries": 10,
    "ConnectionRetryInterval": 5,
    "IndexConnectionsCount": 10,
}


@dataclass(frozen=True)
class Settings:
    enable_index: bool
    enable_storage: bool
    host: str
    port: int
    database: str
    username: str
    password: str
    uri: str
    ssl: bool
    lock: bool
    retries: int
    retry_interval: float
    pool_size: int

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        section = {**DEFAULTS, **config.dict(SECTION)}

        def typed(name: str, kind: type) -> Any:
            value = section[name]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"option {SECTION}.{name} must be {kind.__name__}, not {value!r}")
            return value

        settings = cls(
            enable_index=typed("EnableIndex", bool),
            enable_storage=typed("EnableStorage", bool),
            host=typed("Host", str),
            port=typed("Port", int),
            database=typed("Database", str),
            username=typed("Username", str),
            password=typed("Password", str),
            uri=typed("ConnectionUri", str),
            ssl=typed("EnableSsl", bool),
            lock=typed("Lock", bool),
            retries=typed("MaximumConnectionRetries", int),
            retry_interval=float(typed("ConnectionRetryInterval", int)),
            pool_size=typed("IndexConnectionsCount", int),
        )
        if settings.pool_size < 1:
            raise ConfigError(f"option {SECTION}.IndexConnectionsCount must be at least 1")
        return settings

    def connect_arguments(self) -> dict[str, Any]:
        """asyncpg.connect() keywords: the URI when given (it may carry its own sslmode), else the fields."""
        if self.uri:
            return {"dsn": self.uri}
        return {
            "host": self.host,
            "port": self.port,
            "user": self.username,
            "password": self.password or None,
            "database": self.database,
            "ssl": "require" if self.ssl else "disable",
        }

    def describe(self) -> str:
        """Where the database is, for logs and errors (never the password)."""
        if self.uri:
            head, _, tail = self.uri.rpartition("@")
            return tail if head else self.uri
        return f"{self.host}:{self.port}/{self.database}"
