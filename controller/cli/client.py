"""The API client of the one-shot commands: against Fly per the settings, or (``--embedded``)
against the in-process emulator.  The token joins the redactor as soon as it is read."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from pydantic import SecretStr, ValidationError

from controller.cli.redacting import REDACTOR
from controller.clock import SystemClock
from controller.core.errors import ConfigError
from controller.flyapi import MachinesClient
from controller.model.desired import DesiredApp
from controller.settings import Settings

__all__ = ["client", "settings"]


def settings() -> Settings:
    """The settings from the environment; an invalid one is a :class:`ConfigError` naming it."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {field}: {first['msg']}") from None


@asynccontextmanager
async def client(apps: Sequence[DesiredApp], *, embedded: bool) -> AsyncIterator[MachinesClient]:
    """The API client: against Fly per the settings, or against the embedded emulator."""
    if embedded:
        from controller.cli.demo import EMBEDDED_TOKEN, EMBEDDED_URL, embedded_emulator
        from controller.emulator import EmulatorTransport

        emulator = await embedded_emulator(apps)
        embedded_settings = Settings(api_url=EMBEDDED_URL, api_token=SecretStr(EMBEDDED_TOKEN))
        transport = EmulatorTransport(emulator)
        api = MachinesClient.from_settings(
            embedded_settings, clock=SystemClock(), rng=random.Random(), transport=transport
        )
    else:
        fly = settings()
        if fly.api_token is not None:
            REDACTOR.add_secrets(fly.api_token.get_secret_value())
        api = MachinesClient.from_settings(fly, clock=SystemClock(), rng=random.Random())
    async with api:
        yield api
