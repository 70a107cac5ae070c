"""``heurimentor dmu …`` and ``heurimentor mixture …``. Heavy imports stay inside the commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)
source_app = typer.Typer(no_args_is_help=True, help="Register and list data sources.")
run_app = typer.Typer(no_args_is_help=True, help="Inspect, resume or discard ingestion runs.")
mixture_app = typer.Typer(no_args_is_help=True)
app.add_typer(source_app, name="source")
app.add_typer(run_app, name="run")
console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML settings file (env and flags override it)")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="DMU data dir (default from settings)")]
DbOpt = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (default from settings)")]


def _settings(config: Path | None, **overrides):
    from dmu_service.config import load_settings

    try:
        return load_settings(config, **overrides)
    except ValueError as e:
        console.print(f"[red]settings: {e}")
        raise typer.Exit(2) from e


def _session_factory(settings):
    from dmu_service.db import make_engine, make_session_factory

    return make_session_factory(make_engine(settings.sqlalchemy_url))


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{message}")
    return typer.Exit(1)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Serve the DMU REST API (run `heurimentor dmu migrate` first)."""
    import uvicorn

    from dmu_service.api.main import create_app
    from heurimentor.logs import configure_logging
    from heurimentor.service_kit.settings import InsecureSettings

    settings = _settings(config, host=host, port=port, data_dir=data_dir, database_url=database_url)
    configure_logging(settings.log_level, json_format=settings.log_json)
    try:
        app = create_app(settings)
    except InsecureSettings as e:
        console.print(f"[red]settings: {e}")
        raise typer.Exit(2) from e
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)


@app.command()
def migrate(config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    """Create or upgrade the DMU database schema (alembic upgrade head)."""
    from dmu_service.migrations import upgrade

    settings = _settings(config, data_dir=data_dir, database_url=database_url)
    upgrade(settings.sqlalchemy_url)
    console.print("[green]DMU database at head")


@source_app.command("add")
def source_add(
    name: str,
    language: Annotated[str, typer.Option(help="en | zh | code | mixed")],
    domain: Annotated[str, typer.Option()] = "",
    location: Annotated[str, typer.Option()] = "",
    pipeline: Annotated[str, typer.Option(help="JSON overrides of the cleaning stages")] = "{}",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Register a data source."""
    from pydantic import ValidationError

    from dmu_service.crud.sources import SourceExists, create_source
    from dmu_service.pipeline.config import PipelineConfig
    from dmu_service.schemas.sources import SourceCreate

    try:
        source_in = SourceCreate(name=name, language=language, domain=domain, location=location, pipeline=json.loads(pipeline))
        PipelineConfig.for_source(source_in.language, source_in.pipeline)
    except (ValidationError, json.JSONDecodeError) as e:
        raise _fail(f"source {name!r}: invalid: {e}") from e
    with _session_factory(_settings(config, data_dir=data_dir, database_url=database_url))() as session:
        try:
            create_source(session=session, source_in=source_in)
            session.commit()
        except SourceExists as e:
            raise _fail(str(e)) from e
    console.print(f"[green]source {name} registered")


@source_app.command("list")
def source_list(config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    from dmu_service.crud.sources import list_sources

    table = Table("name", "language", "domain", "location")
    with _session_factory(_settings(config, data_dir=data_dir, database_url=database_url))() as session:
        for s in list_sources(session=session):
            table.add_row(s.name, s.language, s.domain, s.location)
    Console().print(table)


def _execute(settings, run_id: int, backend: str, ray_address: str | None) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from dmu_service.pipeline.runner import RunError, execute_run

    map_batches = None
    if backend == "ray":
        from dmu_service.pipeline.ray_backend import RayBackend

        map_batches = RayBackend(address=ray_address)
    with Progress(
        TextColumn("[bold]run {task.fields[run]}"),
        BarColumn(),
        TextColumn("files {task.completed}/{task.total}"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("", total=None, run=run_id)

        def on_progress(counts: dict, file_index: int, n_files: int) -> None:
            progress.update(
                task,
                total=n_files,
                completed=file_index,
                description=f"read {counts['read']:,}  kept {counts['kept']:,}  tokens {counts['tokens']:,}",
            )

        try:
            run = execute_run(
                session_factory=_session_factory(settings),
                data_dir=settings.data_dir,
                run_id=run_id,
                map_batches=map_batches,
                on_progress=on_progress,
            )
        except RunError as e:
            raise _fail(str(e)) from e
    console.print_json(json.dumps(run.counts))


@app.command()
def ingest(
    source: str,
    paths: Annotated[list[Path], typer.Argument(help="files or folders (JSONL, Parquet, text; .gz/.zst)")],
    tokenizer: Annotated[Path | None, typer.Option(help="tokenizer.json of the trainer's tokenizer")] = None,
    backend: Annotated[str, typer.Option(help="local | ray")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start a local Ray)")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Ingest files into SOURCE as a new run: clean, dedup against everything kept, tokenize."""
    from dmu_service.crud.sources import get_source
    from dmu_service.pipeline.runner import RunError, start_run

    if backend not in ("local", "ray"):
        raise _fail(f"--backend {backend!r}: expected local or ray")
    settings = _settings(config, data_dir=data_dir, database_url=database_url)
    with _session_factory(settings)() as session:
        found = get_source(session=session, name=source)
        if found is None:
            raise _fail(f"source {source!r} does not exist; `heurimentor dmu source add` it first")
        try:
            run = start_run(
                session=session, source=found, inputs=paths, tokenizer_path=str(tokenizer) if tokenizer else None, backend=backend
            )
        except RunError as e:
            raise _fail(str(e)) from e
    console.print(f"run {run.id}: {len(run.inputs)} file(s)")
    _execute(settings, run.id, backend, ray_address)


@run_app.command("list")
def run_list(source: str | None = None, config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    from dmu_service.crud.sources import list_runs

    table = Table("id", "source", "status", "read", "kept", "exact dup", "near dup", "tokens", "updated")
    with _session_factory(_settings(config, data_dir=data_dir, database_url=database_url))() as session:
        for r in list_runs(session=session, source=source):
            c = r.counts
            table.add_row(
                str(r.id),
                r.source.name,
                r.status,
                *(f"{c.get(k, 0):,}" for k in ("read", "kept", "exact_dup", "near_dup", "tokens")),
                r.updated_at.isoformat(timespec="seconds"),
            )
    Console().print(table)


@run_app.command("show")
def run_show(run_id: int, config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    from dmu_service.api.routes.runs import run_public
    from dmu_service.crud.sources import get_run

    with _session_factory(_settings(config, data_dir=data_dir, database_url=database_url))() as session:
        run = get_run(session=session, run_id=run_id)
        if run is None:
            raise _fail(f"run {run_id} does not exist")
        typer.echo(run_public(run).model_dump_json(indent=2))


@run_app.command("resume")
def run_resume(
    run_id: int,
    backend: Annotated[str, typer.Option()] = "local",
    ray_address: str | None = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Continue an unfinished (crashed or interrupted) run from its last checkpoint."""
    _execute(_settings(config, data_dir=data_dir, database_url=database_url), run_id, backend, ray_address)


@run_app.command("why")
def run_why(
    run_id: int,
    rule: Annotated[str | None, typer.Option("--rule", help="only this rule (e.g. near_dup, gopher_stop_words)")] = None,
    document: Annotated[str | None, typer.Option("--id", help="only this document, RUN:FILE:RECORD")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many rows")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Why documents of run RUN went: its exclusion log (rule or duplicate_of, the value that tripped it)."""
    from dmu_service.api.routes.exclusions import exclusion_public
    from dmu_service.crud.exclusions import list_exclusions, parse_document_id
    from dmu_service.crud.sources import get_run

    position = None
    if document is not None:
        try:
            doc_run, file_index, record = parse_document_id(document)
        except ValueError as e:
            raise _fail(str(e)) from e
        if doc_run != run_id:
            raise _fail(f"document {document} belongs to run {doc_run}, not run {run_id}")
        position = (file_index, record)
    with _session_factory(_settings(config, data_dir=data_dir, database_url=database_url))() as session:
        run = get_run(session=session, run_id=run_id)
        if run is None:
            raise _fail(f"run {run_id} does not exist")
        rows = [
            exclusion_public(run, r) for r in list_exclusions(session=session, run_id=run_id, rule=rule, position=position, limit=limit)
        ]
    if as_json:
        for row in rows:
            typer.echo(row.model_dump_json())
        return
    if not rows:
        what = f"document {document}" if document else f"rule {rule!r}" if rule else "any document"
        console.print(f"run {run_id}: no exclusion of {what} (kept, or not read yet)")
        return
    table = Table("document", "file", "record", "rule", "value", "duplicate of", "language")
    for row in rows:
        table.add_row(
            row.document,
            Path(row.file).name,
            str(row.record),
            row.rule,
            "" if row.value is None else f"{row.value:g}",
            row.duplicate_of or "",
            row.language,
        )
    Console().print(table)


@run_app.command("discard")
def run_discard(run_id: int, config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None) -> None:
    """Delete an unfinished run's outputs; the kept set stays that of the completed runs."""
    from dmu_service.pipeline.runner import RunError, discard_run, ingest_lock

    settings = _settings(config, data_dir=data_dir, database_url=database_url)
    try:
        with ingest_lock(settings.data_dir), _session_factory(settings)() as session:
            discard_run(session=session, data_dir=settings.data_dir, run_id=run_id)
    except RunError as e:
        raise _fail(str(e)) from e
    console.print(f"[green]run {run_id} discarded")


UrlOpt = Annotated[str | None, typer.Option("--url", help="DMU base URL (default http://<host>:<port> from settings)")]


def _client(config: Path | None, url: str | None):
    from heurimentor.contracts.mixtures import MixtureClient

    settings = _settings(config)
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    return MixtureClient(url or f"http://{settings.host}:{settings.port}", token=token)


@mixture_app.command("get")
def mixture_get(
    name: str,
    history: Annotated[bool, typer.Option("--history", help="all versions")] = False,
    url: UrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print the current version of mixture NAME (JSON), or its whole history."""
    from heurimentor.contracts.mixtures import MixtureRequestError

    with _client(config, url) as client:
        try:
            if history:
                typer.echo(json.dumps([v.model_dump(mode="json") for v in client.versions(name)], indent=2))
                return
            current = client.get(name)
        except MixtureRequestError as e:
            raise _fail(str(e)) from e
    if current is None:
        raise _fail(f"mixture {name!r} does not exist")
    typer.echo(current.model_dump_json(indent=2))


@mixture_app.command("set")
def mixture_set(
    name: str,
    weights: Annotated[list[str], typer.Argument(help="SOURCE=WEIGHT pairs (all weights of the mixture)")],
    reason: Annotated[str, typer.Option(help="why (kept in the history)")] = "",
    author: Annotated[str, typer.Option()] = "cli",
    if_match: Annotated[int | None, typer.Option(help="fail unless the current version is this one")] = None,
    url: UrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Set all weights of mixture NAME (creates it when missing): `heurimentor mixture set web src-a=0.7 src-b=0.3`."""
    from heurimentor.contracts.mixtures import MixtureRequestError

    parsed: dict[str, float] = {}
    for pair in weights:
        source, sep, value = pair.partition("=")
        try:
            parsed[source] = float(value)
        except ValueError:
            sep = ""
        if not sep or not source:
            raise _fail(f"{pair!r}: expected SOURCE=WEIGHT, e.g. web-en=0.7")
    with _client(config, url) as client:
        try:
            if if_match is None and client.get(name) is None:
                version = client.create(name, parsed, reason=reason, author=author)
            else:
                version = client.update(name, parsed, reason=reason, author=author, if_match=if_match)
        except MixtureRequestError as e:  # the client's one error type (a 412 is its MixtureConflict)
            raise _fail(str(e)) from e
    typer.echo(version.model_dump_json(indent=2))
