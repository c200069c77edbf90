"""Declaring a service, and what it is handed at run time: the names every service imports."""

from cleave.data.unit_of_work import UnitOfWork
from cleave.service.context import PortRegistry, ServiceContext, SystemFacts
from cleave.service.declaration import (
    ClientRegistrar,
    PortBinding,
    ProviderState,
    Seeder,
    Service,
    Subscription,
    Welcome,
    Worker,
)

__all__ = [
    "ClientRegistrar",
    "PortBinding",
    "PortRegistry",
    "ProviderState",
    "Seeder",
    "Service",
    "ServiceContext",
    "Subscription",
    "SystemFacts",
    "UnitOfWork",
    "Welcome",
    "Worker",
]
