"""The `nervewatch` command: run services, migrate, seed, manage tenants, re-score, run everything locally,
simulate, bench."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from nervewatch.logs import setup_logging
from nervewatch.settings import Settings, get_settings

SERVICES = ("ingest", "scoring", "alerts", "console")


def _ports(settings: Settings) -> dict[str, int]:
    return {
        "ingest": settings.ingest_port,
        "scoring": settings.scoring_port,
        "alerts": settings.alerts_port,
        "console": settings.console_port,
    }


async def _serve(service: str, settings: Settings) -> None:
    from aiohttp import web

    from nervewatch.http import serve
    from nervewatch.runtime import EventLog, ProcessSpec, Runtime
    from schemas.events import Topics, dead_letter_json
    from schemas.openapi import openapi_json

    if service == "console":  # no database, no broker: static files and a proxy
        from services.console.app import build_app as build_console

        await serve(build_console(settings), settings.host, settings.console_port, settings.shutdown_timeout_s)
        return
    spec = ProcessSpec(EventLog(Topics.all(), Topics.dead_letters, dead_letter_json), openapi_json)
    rt = await Runtime.start(settings, spec)
    app: web.Application
    if service == "ingest":
        from services.ingest.app import build_app as build_ingest

        app = build_ingest(rt)
    elif service == "scoring":
        from services.scoring.app import build_app as build_scoring

        app = await build_scoring(rt)
    else:
        from services.alerts.app import build_app as build_alerts

        app = await build_alerts(rt)
    await serve(app, settings.host, _ports(settings)[service], settings.shutdown_timeout_s)


async def _migrate(settings: Settings) -> list[str]:
    from nervewatch.db import migrate
    from nervewatch.runtime import retry_until_ready

    assert settings.database_url, "DATABASE_URL is not set"
    dsn = settings.database_url
    return await retry_until_ready("postgresql", lambda: migrate(dsn))


async def _seed_dev(settings: Settings) -> tuple[str, str]:
    from nervewatch.db import create_pool
    from nervewatch.identity.store import IdentityStore, generate_key, seed_dev_tenant

    assert settings.database_url, "DATABASE_URL is not set"
    key = settings.dev_api_key
    if not key:
        saved = settings.data_dir / "dev_api_key"
        if saved.exists():
            key = saved.read_text().strip()
        else:
            key = generate_key()
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            saved.write_text(key)
            saved.chmod(0o600)
    pool = await create_pool(settings.database_url, 1, 2)
    try:
        return await seed_dev_tenant(IdentityStore(pool), key, settings.dev_webhook_secret)
    finally:
        await pool.close()


async def _tenants(settings: Settings, args: argparse.Namespace) -> int:
    """`tenants create|list|disable`: one line on stderr and exit 1 for an operator error."""
    from nervewatch.db import create_pool
    from nervewatch.identity import tenants_admin as admin
    from nervewatch.identity.store import IdentityStore

    if not settings.database_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 1
    pool = await create_pool(settings.database_url, 1, 2)
    try:
        store = IdentityStore(pool)
        try:
            if args.tenants_command == "create":
                created = await admin.create_tenant(store, args.name)
                print(f"tenant_id: {created.tenant_id}")
                print(f"api_key: {created.api_key}")
                print("(admin scope; shown once, store it now)", file=sys.stderr)
            elif args.tenants_command == "list":
                rows = await admin.list_tenants(pool)
                if args.json:
                    print(json.dumps([r.to_json() for r in rows], indent=2))
                else:
                    print("TENANT_ID\tNAME\tCREATED\tDISABLED\tKEYS\tACTIVE_KEYS")
                    for r in rows:
                        print("\t".join("-" if v is None else str(v) for v in r.to_json().values()))
            else:
                tenant_id, revoked = await admin.disable_tenant(store, args.tenant)
                print(f"tenant {tenant_id} disabled; {revoked} key(s) revoked")
        except admin.TenantExists:
            print(f"a tenant named {args.name!r} already exists", file=sys.stderr)
            return 1
        except admin.TenantNotFound:
            print(f"no tenant with id or name {args.tenant!r}", file=sys.stderr)
            return 1
        except admin.TenantAmbiguous:
            print(f"several tenants are named {args.tenant!r}; give the tenant id", file=sys.stderr)
            return 1
        except ValueError as exc:
            print(str(exc), file=sys.stderr)
            return 1
        return 0
    finally:
        await pool.close()


async def _rescore(settings: Settings, args: argparse.Namespace) -> int:
    """`rescore`: the report on stdout (text or --json); one line on stderr and exit 1 for an operator error."""
    from datetime import date

    from nervewatch.db import create_pool
    from tooling import rescore

    if not settings.database_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 1
    since = None
    if args.since is not None:
        try:
            since = date.fromisoformat(args.since)
        except ValueError:
            print("--since must be a date (YYYY-MM-DD)", file=sys.stderr)
            return 1
    text = None
    if args.profile is not None:
        try:
            text = args.profile.read_text()
        except OSError as exc:
            print(f"cannot read the profile file: {exc.strerror}", file=sys.stderr)
            return 1
    pool = await create_pool(settings.database_url, 2, 3)
    try:
        result = await rescore.run(pool, args.tenant, since=since, profile_text=text, dry_run=args.dry_run)
    except rescore.RescoreError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    finally:
        await pool.close()
    if args.json:
        body = {
            "run_id": result.run_id,
            "dry_run": result.dry_run,
            "profile_source": result.profile_source,
            "profile_version": result.profile_version,
            **result.summary.to_json(),
        }
        print(json.dumps(body, indent=2))
    else:
        print(rescore.report(result, args.tenant))
    return 0


def _run_local(settings: Settings) -> int:
    """Embedded stack + migrations + dev tenant + the four services (console included), supervised."""
    from tooling.devstack import start_embedded
    from tooling.supervisor import Supervisor, wait_ready

    started = time.monotonic()
    stack = start_embedded(settings.data_dir, settings.database_url, settings.kafka_bootstrap_servers)
    env = dict(os.environ, DATABASE_URL=stack.database_url, KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap)
    supervisor = Supervisor(SERVICES, env, stop_timeout_s=settings.shutdown_timeout_s + 10)
    try:
        local = Settings(database_url=stack.database_url, kafka_bootstrap_servers=stack.bootstrap)
        asyncio.run(_migrate(local))
        key, secret = asyncio.run(_seed_dev(settings.model_copy(update={"database_url": stack.database_url})))
        supervisor.start()
        ports = _ports(settings)
        wait_ready([f"http://127.0.0.1:{ports[s]}/readyz" for s in SERVICES])
        print(_banner(ports, key, secret, time.monotonic() - started), flush=True)
        supervisor.run()
        return 0
    finally:
        supervisor.stop()
        stack.stop()
        print("stopped", flush=True)


def _banner(ports: dict[str, int], key: str, secret: str, seconds: float) -> str:
    example = json.dumps(
        {
            "event_id": "2f1d6c3e-8a51-4c1b-9b0e-5f3a2d1c7e90",
            "patient_id": "pt-0042",
            "recorded_at": "<now, RFC 3339>",
            "pain": {"current": 6},
            "red_flags": ["foot_drop"],
        }
    )
    return f"""
NerveWatch is ready ({seconds:.1f} s)
  ingest   http://127.0.0.1:{ports["ingest"]}
  scoring  http://127.0.0.1:{ports["scoring"]}
  alerts   http://127.0.0.1:{ports["alerts"]}
  console  http://127.0.0.1:{ports["console"]}/console/   (care-coordinator console; sign in with the key below)
  API key (dev tenant, all scopes): {key}
  webhook secret (dev tenant):      {secret}

Try it (see README for the full red-flag walk-through):
  curl -s -H "Authorization: Bearer {key}" http://127.0.0.1:{ports["alerts"]}/v1/alerts
  check-in body example: {example}
Press Ctrl-C to stop.
"""


def main(argv: Sequence[str] | None = None) -> int:
    argv_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="nervewatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run one service in the foreground")
    p_serve.add_argument("service", choices=SERVICES)
    sub.add_parser("run", help="run everything locally with embedded PostgreSQL and broker")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("seed-dev", help="create the development tenant and print its key")
    p_ten = sub.add_parser("tenants", help="create, list or disable tenants (operators)")
    ten = p_ten.add_subparsers(dest="tenants_command", required=True)
    ten.add_parser("create", help="create a tenant and print its first admin API key once").add_argument("name")
    ten.add_parser("list", help="list tenants (no key material)").add_argument("--json", action="store_true")
    ten.add_parser("disable", help="disable a tenant and revoke all its keys").add_argument("tenant", help="id or name")
    p_rs = sub.add_parser("rescore", help="re-score a tenant's stored series with the current engine and profile")
    p_rs.add_argument("--tenant", required=True, help="tenant id")
    p_rs.add_argument("--since", default=None, help="only patients with data on or after this date (YYYY-MM-DD)")
    p_rs.add_argument("--profile", type=Path, default=None, help="JSON profile override to try (dry runs only)")
    p_rs.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    p_rs.add_argument("--json", action="store_true", help="print the summary as JSON")
    p_sim = sub.add_parser("simulate", help="post a synthetic cohort through the API; --evaluate scores detection")
    if argv_list[:1] == ["simulate"]:  # the simulator is imported only for its own subcommand
        from simulator.cli import add_arguments

        add_arguments(p_sim)
    p_shots = sub.add_parser("screenshots", help="PNGs of the console (inbox, patient) from a simulator run")
    p_shots.add_argument("--out", type=Path, default=Path("docs/img"))
    p_shots.add_argument("--per-archetype", type=int, default=1)
    p_shots.add_argument("--seed", type=int, default=11)
    p_time = sub.add_parser("console-timings", help="browser-measured console timings (500 alerts, 365 days)")
    p_time.add_argument("--alerts", type=int, default=500)
    p_time.add_argument("--days", type=int, default=365)
    p_bench = sub.add_parser("bench", help="benchmark against the embedded stack")
    p_bench.add_argument("--smoke", action="store_true", help="tiny run that checks the harness only")
    p_bench.add_argument("--write", type=Path, default=None, help="write the results as markdown")
    p_soak = sub.add_parser("soak", help="long run through the stack, RSS of every service sampled")
    p_soak.add_argument("--events", type=int, default=1_000_000, help="check-ins to push through (default 1 million)")
    p_soak.add_argument("--interval", type=float, default=10.0, help="seconds between RSS samples")
    p_soak.add_argument("--timeout", type=float, default=6 * 3600.0, help="give up after this many seconds")
    p_soak.add_argument("--write", type=Path, default=None, help="write the report section into this markdown file")
    args = parser.parse_args(argv_list)
    settings = get_settings()
    if args.command == "serve":
        setup_logging(args.service, settings.log_level)
        asyncio.run(_serve(args.service, settings))
        return 0
    setup_logging("cli", settings.log_level)
    if args.command == "migrate":
        applied = asyncio.run(_migrate(settings))
        print(f"applied {len(applied)} migration(s)")
        return 0
    if args.command == "seed-dev":
        key, _ = asyncio.run(_seed_dev(settings))
        print(key)
        return 0
    if args.command == "tenants":
        return asyncio.run(_tenants(settings, args))
    if args.command == "run":
        return _run_local(settings)
    if args.command == "rescore":
        return asyncio.run(_rescore(settings, args))
    if args.command == "simulate":
        from simulator.cli import run as run_simulation

        return asyncio.run(run_simulation(args))
    if args.command == "screenshots":
        from tooling.console_demo import screenshots

        return screenshots(args.out, args.per_archetype, args.seed)
    if args.command == "console-timings":
        from tooling.console_demo import console_timings

        return console_timings(args.alerts, args.days)
    if args.command == "soak":
        from tooling.bench.soak import run_soak

        return run_soak(
            settings, events=args.events, interval_s=args.interval, timeout_s=args.timeout, write=args.write
        )
    from tooling.bench.run import run_bench

    return run_bench(settings, smoke=args.smoke, write=args.write)


if __name__ == "__main__":
    sys.exit(main())
