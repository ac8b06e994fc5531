"""What route handlers receive from the process: its services, typed, through `Depends`.

The app's lifespan opens the services once (server/services.py) and keeps them on
`app.state`; handlers declare `services: ServicesDep` instead of reaching into the
request, so what a route uses shows in its signature.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.services import Services


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(services_of)]
