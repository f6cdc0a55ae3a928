"""`crimeflow token create`: sign an API bearer token with CRIMEFLOW_AUTH_JWT_SECRET."""

from __future__ import annotations

from typing import Annotated

import typer

from crimeflow.contract.settings import get_settings

token_app = typer.Typer(help="API bearer tokens (auth on: CRIMEFLOW_AUTH_JWT_SECRET).")


@token_app.command("create")
def token_create(
    scope: Annotated[
        list[str],
        typer.Option(help="A scope the token grants: predict, feedback, reports, admin. Repeat."),
    ],
    ttl: Annotated[
        str | None,
        typer.Option(help="Lifetime: 90 (s), 15m, 1h, 7d; default CRIMEFLOW_AUTH_TTL_S."),
    ] = None,
    subject: Annotated[
        str, typer.Option(help="The token's subject (sub): who or what uses it.")
    ] = "crimeflow-cli",
) -> None:
    """Print a signed HS256 token (for `Authorization: Bearer <token>`) and nothing else."""
    from api.auth import create_token, parse_ttl

    settings = get_settings()
    try:
        lifetime = parse_ttl(ttl) if ttl is not None else None
        encoded = create_token(settings.auth, scope, ttl=lifetime, subject=subject)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(encoded)
