"""`conductor search-attributes`: register and list the search attributes the Web UI filters jobs by.

`conductor dev` starts its server with them; a production cluster needs them once per namespace, before
the first job starts (an upsert of an unregistered attribute fails the workflow task). See docs/operations.md.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from conductor_worker.commands.hard_exit import hard_exit
from conductor_worker.config import Settings
from conductor_worker.process.client import connect
from contracts import search_attributes

app = typer.Typer(help="Register and list the conductor's search attributes.", no_args_is_help=True)

T = TypeVar("T")
AddressOption = Annotated[
    str | None, typer.Option(help="Temporal frontend HOST:PORT (default: CONDUCTOR_TEMPORAL_ADDRESS).")
]
NamespaceOption = Annotated[
    str | None, typer.Option(help="Temporal namespace (default: CONDUCTOR_TEMPORAL_NAMESPACE).")
]


def _type_name(value: int) -> str:
    """`INDEXED_VALUE_TYPE_KEYWORD_LIST` -> `KeywordList`, as the `temporal` CLI spells types."""
    return "".join(
        p.title() for p in IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_").split("_")
    )


async def registered(client: Client, namespace: str) -> dict[str, int]:
    """The namespace's custom search attributes: name -> IndexedValueType."""
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(response.custom_attributes)


async def ensure_registered(client: Client, namespace: str) -> tuple[list[str], list[str], list[str]]:
    """Add whichever of the conductor's attributes are missing: (added, already present, wrong type)."""
    existing = await registered(client, namespace)
    wanted = {key.name: int(key.indexed_value_type) for key in search_attributes.ALL}
    present = [n for n, kind in wanted.items() if existing.get(n) == kind]
    conflicting = [n for n, kind in wanted.items() if n in existing and existing[n] != kind]
    missing = [n for n in wanted if n not in existing]
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace, search_attributes={n: wanted[n] for n in missing}
                )
            )
        except RPCError as err:
            # Another `register` won the race: whatever it added with the right type counts as present.
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise
            now = await registered(client, namespace)
            if any(now.get(n) != wanted[n] for n in missing):
                raise
            return [], present + missing, conflicting
    return missing, present, conflicting


def _call(settings: Settings, operation: Callable[[Client, str], Awaitable[T]]) -> T:
    """Connect and run one operation; an unreachable server or a refused call is a message, not a traceback."""

    async def run() -> T:
        return await operation(await connect(settings), settings.temporal_namespace)

    try:
        return asyncio.run(run())
    except (RuntimeError, RPCError) as err:
        typer.echo(
            f"error: {settings.temporal_address} namespace {settings.temporal_namespace}: {err}", err=True
        )
        hard_exit(2)


def _settings(address: str | None, namespace: str | None) -> Settings:
    settings = Settings()
    update = {"temporal_address": address or settings.temporal_address}
    update["temporal_namespace"] = namespace or settings.temporal_namespace
    return settings.model_copy(update=update)


@app.command()
def register(address: AddressOption = None, namespace: NamespaceOption = None) -> None:
    """Register the conductor's attributes; ones already present are left as they are."""
    settings = _settings(address, namespace)
    added, present, conflicting = _call(settings, ensure_registered)
    typer.echo(f"namespace {settings.temporal_namespace} on {settings.temporal_address}:")
    types = {key.name: search_attributes.type_name(key) for key in search_attributes.ALL}
    for name in added:
        typer.echo(f"  added            {name} ({types[name]})")
    for name in present:
        typer.echo(f"  already present  {name} ({types[name]})")
    for name in conflicting:
        typer.echo(
            f"  WRONG TYPE       {name}: registered with another type, the conductor needs {types[name]}"
        )
    hard_exit(1 if conflicting else 0)


@app.command("list")
def list_(address: AddressOption = None, namespace: NamespaceOption = None) -> None:
    """Show the conductor's attributes as registered (or missing), then the namespace's other custom ones."""
    settings = _settings(address, namespace)
    existing = _call(settings, registered)
    ours = [key.name for key in search_attributes.ALL]
    typer.echo(f"namespace {settings.temporal_namespace} on {settings.temporal_address}:")
    for name in ours:
        state = _type_name(existing[name]) if name in existing else "MISSING (run `register`)"
        typer.echo(f"  {name:<18} {state}")
    others = sorted(set(existing) - set(ours))
    if others:
        typer.echo("other custom attributes:")
        for name in others:
            typer.echo(f"  {name:<18} {_type_name(existing[name])}")
    hard_exit(0)
