"""Captures per second over HTTP on loopback, with p50/p99 latency, against floors measured in the same run.

Run by hand (prints figures, asserts nothing)::

    python bench/bench_capture_web.py [--client wrk|python] [--duration 10] [--requests 1000] [--concurrency 8]

The load generator is ``wrk`` (Debian package ``wrk``, C, one thread, a Lua
script making every body unique) when it is installed, else an async httpx
client (which itself costs more CPU than the server on a 2-core machine).

What is measured:

1. ``corecrm serve`` (a real process, SQLite, the capture_web plugin with no
   rate limits) receiving unique JSON captures from an async httpx client:
   requests/s, latency p50/p99 (the client waits for the capture id, i.e. the
   raw body committed), then the time until the background pipeline has
   made every lead (end-to-end captures/s).
2. Floor A, the HTTP stack alone: the same uvicorn + Starlette serving a
   handler that answers 201 without touching a database.
3. Floor B, the storage alone: plain ``sqlite3``, one committed INSERT of the
   payload per request (WAL, synchronous=NORMAL, as the CRM configures it).

The ratios say what the CRM costs on top of its parts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

FLOOR_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def capture(request):
    await request.body()
    return JSONResponse({"capture_id": 1, "status": "accepted"}, status_code=201)

app = Starlette(routes=[Route("/capture/{form}", capture, methods=["POST"]), Route("/health", lambda r: JSONResponse({}), methods=["GET"])])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not start")


def payload(i: int) -> dict:
    return {"first_name": f"Bench{i}", "last_name": f"Lead{i}", "email": f"bench{i}@example.com", "company": f"Company {i % 97}", "message": "Please call me back about pricing."}


async def load(url: str, n: int, concurrency: int) -> tuple[float, list[float], int]:
    lat: list[float] = []
    errors = 0
    first_error: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal errors
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t = time.perf_counter()
                try:
                    r = await client.post("/capture/bench", json=payload(i))
                except httpx.TransportError as exc:  # counted, not fatal: the figures say how many
                    errors += 1
                    first_error.append(f"{type(exc).__name__}: {exc}")
                    continue
                lat.append(time.perf_counter() - t)
                if r.status_code not in (200, 201):
                    errors += 1
                    first_error.append(f"HTTP {r.status_code}: {r.text[:200]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    if first_error:
        print(f"  ({errors} errors; first: {first_error[0]})", file=sys.stderr)
    return elapsed, lat, errors


WRK_SCRIPT = r"""
counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"first_name":"Bench%d","last_name":"Lead%d","email":"bench%d@example.com","company":"Company %d","message":"Please call me back about pricing."}', counter, counter, counter, counter % 97)
  return wrk.format("POST", "/capture/bench", {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %f %f %f\n", summary.requests, e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50) / 1000.0, latency:percentile(99) / 1000.0, summary.duration / 1e6))
end
"""


def run_wrk(url: str, duration: float, concurrency: int, script: Path) -> tuple[int, int, float, float, float]:
    """(requests, errors, p50 s, p99 s, elapsed s) from one wrk run."""
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, int(duration))}s", "--timeout", "30s", "-s", str(script), url + "/capture/bench"], capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("WRK "))
    reqs, sock_err, status_err, p50, p99, secs = line.split()[1:]
    return int(reqs), int(sock_err) + int(status_err), float(p50) / 1000, float(p99) / 1000, float(secs)


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def sqlite_floor(path: Path, n: int) -> float:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE captures (id INTEGER PRIMARY KEY, payload BLOB, received_at TEXT)")
    bodies = [json.dumps(payload(i)).encode() for i in range(n)]
    t0 = time.perf_counter()
    for b in bodies:
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO captures (payload, received_at) VALUES (?, datetime('now'))", (b,))
        con.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of load per server (wrk)")
    ap.add_argument("--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    args = ap.parse_args()
    n, c = args.requests, args.concurrency
    use_wrk = args.client == "wrk"
    tmp = Path(tempfile.mkdtemp(prefix="bench-capture-web-"))
    cfg = tmp / "corecrm.toml"
    cfg.write_text(
        f"""
[crm]
database = "sqlite:///{tmp / 'bench.db'}"

[plugins]
enabled = ["capture_json", "capture_web"]

[plugins.capture_web]
secret = "bench"
rate_per_ip = 0
rate_per_key = 0

[plugins.capture_web.forms.bench]
fields = {{ first_name = "first_name", last_name = "last_name", email = "email", company = "company", message = "note" }}
required = ["email"]
source = "bench"
"""
    )
    exe = Path(sys.executable).with_name("corecrm")
    procs: list[subprocess.Popen] = []
    try:
        # --- floor A: the HTTP stack alone
        (tmp / "floor_app.py").write_text(FLOOR_APP)
        port_a = free_port()
        pa = subprocess.Popen([sys.executable, "-m", "uvicorn", "floor_app:app", "--host", "127.0.0.1", "--port", str(port_a), "--log-level", "warning", "--no-access-log"], cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(pa)
        wait_up(f"http://127.0.0.1:{port_a}", pa)
        script = tmp / "unique_post.lua"
        script.write_text(WRK_SCRIPT)
        if use_wrk:
            fa = run_wrk(f"http://127.0.0.1:{port_a}", args.duration, c, script)
            fa_rate, fa_p50, fa_p99 = fa[0] / fa[4], fa[2], fa[3]
        else:
            asyncio.run(load(f"http://127.0.0.1:{port_a}", min(200, n), c))  # warm-up
            fa_elapsed, fa_lat, _ = asyncio.run(load(f"http://127.0.0.1:{port_a}", n, c))
            fa_rate, fa_p50, fa_p99 = n / fa_elapsed, pct(fa_lat, 50), pct(fa_lat, 99)
        pa.terminate()
        pa.wait()

        # --- floor B: plain sqlite3, one committed insert per request
        nb = 2000
        fb_rate = nb / sqlite_floor(tmp / "floor.db", nb)

        # --- corecrm serve
        port = free_port()
        server_log = open(tmp / "server.log", "wb")  # a pipe nobody reads would fill up and stall the server
        p = subprocess.Popen([str(exe), "--config", str(cfg), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-deliveries"], stdout=server_log, stderr=subprocess.STDOUT, env={**os.environ})
        procs.append(p)
        url = f"http://127.0.0.1:{port}"
        wait_up(url, p)
        t_start = time.perf_counter()
        if use_wrk:
            n, errors, p50, p99, elapsed = run_wrk(url, args.duration, c, script)
        else:
            elapsed, lat, errors = asyncio.run(load(url, n, c))
            p50, p99 = pct(lat, 50), pct(lat, 99)
        while httpx.get(f"{url}/health").json()["processing"] > 0:
            time.sleep(0.02)
        e2e = time.perf_counter() - t_start
        con = sqlite3.connect(tmp / "bench.db")
        leads = con.execute("SELECT count(*) FROM leads").fetchone()[0]
        con.close()
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.terminate()
                pr.wait()

    rate = n / elapsed
    print(f"capture_web over HTTP on loopback: {n} unique JSON captures, {c} concurrent connections, SQLite, client {args.client}")
    print(f"  corecrm serve           {rate:8.0f} captures/s acknowledged  p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms  errors {errors}")
    print(f"  end to end (leads made) {n / e2e:8.0f} captures/s   ({leads} leads in {e2e:.2f} s from the first request)")
    print(f"  floor A: HTTP only      {fa_rate:8.0f} req/s              p50 {fa_p50 * 1000:6.1f} ms  p99 {fa_p99 * 1000:6.1f} ms")
    print(f"  floor B: sqlite3 commit {fb_rate:8.0f} inserts/s (one transaction per request)")
    print(f"  ratios: HTTP floor / corecrm = {fa_rate / rate:.1f}x;  sqlite3 floor / corecrm = {fb_rate / rate:.1f}x;  leads made / acknowledged = {leads}/{n}")


if __name__ == "__main__":
    main()
