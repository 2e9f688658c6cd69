"""Bundled plugin ``capture_csv``: CSV and Excel imports through the intake pipeline.

``corecrm import FILE`` maps the file's columns to lead fields (synonyms in
several languages, fuzzy matching, saved mappings), streams the rows in
batches through the same pipeline as single leads (verification, screening,
de-duplication, scoring, routing), reports rejected rows with their line
numbers, and never imports a row twice: re-running a file, or resuming an
interrupted import, is safe.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import click

from corecrm.errors import ConfigError
from corecrm.hooks import hookimpl
from corecrm.records import CliCommand, ImportFormat, Setting


def _check_mappings(value: Any, key: str) -> None:
    from corecrm_plugins.capture_csv.mapping import FIELDS

    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigError("expected a table of column = field", key=f"{key}.{name}")
        for col, target in table.items():
            if not isinstance(target, str) or (target != "-" and target not in FIELDS and not target.startswith("attributes.")):
                raise ConfigError(f"unknown field {target!r} (fields: {', '.join(FIELDS)}, attributes.<key>, or -)", key=f"{key}.{name}.{col}")


def _check_synonyms(value: Any, key: str) -> None:
    from corecrm_plugins.capture_csv.mapping import FIELDS

    for field, names in value.items():
        if field not in FIELDS:
            raise ConfigError(f"unknown field {field!r}", key=f"{key}.{field}")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError("expected a list of column names", key=f"{key}.{field}")


@hookimpl
def crm_plugin_settings() -> Iterable[Setting]:
    return [
        Setting("mappings", "dict", {}, "saved column mappings: [plugins.capture_csv.mappings.NAME] column = field", validate=_check_mappings),
        Setting("synonyms", "dict", {}, "extra header synonyms per field: field = [names]", validate=_check_synonyms),
        Setting("unmapped", "str", "attributes", "what to do with unmapped columns", choices=("attributes", "drop")),
        Setting("fuzzy_cutoff", "float", 86.0, "minimum rapidfuzz ratio (0-100) for fuzzy header matching"),
        Setting("batch_size", "int", 5000, "rows per pipeline batch (and per commit)"),
        Setting("default_source", "str", None, "source of imported leads that do not name one"),
    ]


@hookimpl
def crm_db_schema() -> Iterable[Any]:
    from corecrm_plugins.capture_csv.importer import metadata

    return [metadata]


@hookimpl
def crm_import_formats() -> Iterable[ImportFormat]:
    from corecrm_plugins.capture_csv import reading

    def read(path: Any, options: Mapping[str, Any] | None = None) -> Iterable[Mapping[str, Any]]:
        opts = dict(options or {})
        return reading.dicts(reading.read_table(Path(path), encoding=opts.get("encoding"), delimiter=opts.get("delimiter"), sheet=opts.get("sheet")))

    return [
        ImportFormat("csv", (".csv", ".tsv", ".txt"), read, "delimited text: any delimiter, quoted fields, BOM, encoding detection"),
        ImportFormat("xlsx", (".xlsx", ".xlsm"), read, "Excel workbooks (first sheet unless --sheet)"),
    ]


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--map", "maps", multiple=True, metavar="COL=FIELD", help="Map a column to a field (or - to drop it); repeatable.")
@click.option("--mapping", "mapping_name", help="Use a mapping saved in [plugins.capture_csv.mappings.NAME].")
@click.option("--save-mapping", help="Save the mapping used as NAME in corecrm.toml.")
@click.option("--encoding", help="Text encoding (default: BOM, then UTF-8, then detection).")
@click.option("--delimiter", help="Field delimiter (default: detected).")
@click.option("--sheet", help="Excel sheet name (default: the first).")
@click.option("--dry-run", is_flag=True, help="Map and check the rows; write nothing.")
@click.option("--update", "mode", flag_value="update", help="Rows whose e-mail matches a lead update it.")
@click.option("--skip-existing", "mode", flag_value="skip", help="Rows whose e-mail matches a lead are skipped.")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), help="Where to write rejected rows (default: FILE.rejects.csv here).")
@click.option("--unmapped", type=click.Choice(["attributes", "drop"]), help="Unmapped columns go to attributes (default) or are dropped.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def import_command(file: Path, maps: tuple[str, ...], mapping_name: str | None, save_mapping: str | None, encoding: str | None, delimiter: str | None,
                   sheet: str | None, dry_run: bool, mode: str | None, rejects: Path | None, unmapped: str | None, as_json: bool) -> None:  # fmt: skip
    """Import leads from a CSV or Excel file through the intake pipeline."""
    import attrs

    from corecrm.clitools import echo_json, echo_table, state
    from corecrm.config import CONFIG_NAME
    from corecrm.errors import CrmError
    from corecrm_plugins.capture_csv.importer import run_import, save_mapping as write_mapping

    st = state()
    crm = st.crm
    settings = crm.settings("capture_csv")
    explicit: dict[str, str] = {}
    if mapping_name:
        saved = settings["mappings"].get(mapping_name)
        if saved is None:
            raise CrmError(f"no saved mapping {mapping_name!r} (saved: {', '.join(settings['mappings']) or 'none'})")
        explicit.update(saved)
    for m in maps:
        col, sep, field = m.partition("=")
        if not sep or not col.strip() or not field.strip():
            raise CrmError(f"--map {m!r}: expected COLUMN=FIELD")
        explicit[col.strip()] = field.strip()
    rejects_path = rejects or Path.cwd() / f"{file.name}.rejects.csv"
    show = not as_json
    bar_ctx: Any = None
    interactive = sys.stderr.isatty() and not as_json

    def on_mapping(columns: Any) -> None:
        if show:
            echo_table(["column", "field", "how"], [[c.header, c.target or "(dropped)", c.how + (f" {c.score:g}" if c.score else "")] for c in columns])

    if interactive:
        bar_ctx = click.progressbar(length=0, label="importing", file=sys.stderr, show_pos=True)
        bar = bar_ctx.__enter__()

        def progress(n: int) -> None:
            bar.length = (bar.length or 0) + n
            bar.update(n)
    else:
        progress = None  # type: ignore[assignment]
    try:
        summary = run_import(
            crm, file, settings=settings, maps=explicit, encoding=encoding, delimiter=delimiter, sheet=sheet, dry_run=dry_run,
            existing=mode or "pipeline", rejects_path=rejects_path, unmapped=unmapped, progress=progress, on_mapping=on_mapping,
        )  # fmt: skip
    finally:
        if bar_ctx is not None:
            bar_ctx.__exit__(None, None, None)
    if save_mapping:
        from corecrm.config import find_config

        from corecrm_plugins.capture_csv.mapping import ColumnMap

        cfg_path = find_config(st.config_path) or Path.cwd() / CONFIG_NAME
        write_mapping(cfg_path, save_mapping, [ColumnMap(m["column"], 0, m["field"], m["how"]) for m in summary.mapping])
    if not summary.rejected:
        summary.rejects_path = None
    if as_json:
        echo_json(attrs.asdict(summary))
        return
    verb = "would import" if dry_run else "imported"
    click.echo(
        f"{file}: {summary.rows} rows; {verb} {summary.imported}, updated {summary.updated}, merged {summary.merged}, "
        f"rejected {summary.rejected}, skipped {summary.skipped_existing}, already imported {summary.already_imported}, quarantined {summary.quarantined}"
    )
    if summary.resumed_from_line:
        click.echo(f"resumed at line {summary.resumed_from_line}")
    if summary.rejected:
        click.echo(f"rejected rows: {summary.rejects_path}")


@hookimpl
def crm_cli_commands() -> Iterable[CliCommand]:
    return [CliCommand(import_command)]
