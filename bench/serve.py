"""Serve benchmark: starts `rag serve` on a store (the seed corpus ingested into a temporary home when none is
given), then prints
  - `rag ask` through the server: wall time to exit of fresh `rag ask` processes with RAG_SERVER_URL set (median),
    beside `rag --help` (the CLI's own start, the floor of any `rag` command);
  - `/v1/ask` from one client, then from C concurrent clients: p50/p95 latency, errors and lost requests;
and stops the server. Figures only, no asserts; timings depend on the machine's load.

    .venv/bin/python bench/serve.py [--home DIR] [--requests 80] [--clients 8] [--cold-runs 5] [--backend extractive]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from seeds import gold_questions

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"
RAG = [sys.executable, "-c", "from rag.cli import main; main()"]


def environment(home: Path) -> dict[str, str]:
    env = {**os.environ, "RAG_HOME": str(home), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("RAG_SERVER_URL", None)
    return env


def start_server(env: dict[str, str], backend: str, log: Path, wait_s: float = 300) -> tuple[subprocess.Popen, str]:
    with open(log, "wb") as out:
        proc = subprocess.Popen([*RAG, "serve", "--port", "0", "--backend", backend], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + wait_s
    while not (found := re.search(r"listening on (http://\S+)", log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"rag serve did not come up:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return proc, found.group(1)


def wall(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process: on a busy machine the CPU time says what a quiet one would
    take better than the wall time does."""
    t0, cpu0 = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[3:])} failed ({done.returncode}): {done.stderr.strip()}")
    return seconds, _children_cpu() - cpu0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(url: str, question: str) -> tuple[int, float, str]:
    """(status, seconds, error) of one POST /v1/ask; status 0 when no reply came (a lost request)."""
    body = json.dumps({"question": question}).encode()
    request = urllib.request.Request(f"{url}/v1/ask", data=body, headers={"content-type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as reply:
            json.loads(reply.read())
            return reply.status, time.perf_counter() - t0, ""
    except urllib.error.HTTPError as e:
        return e.code, time.perf_counter() - t0, e.read().decode(errors="replace")[:200]
    except OSError as e:
        return 0, time.perf_counter() - t0, str(e)


def median_ms(runs: list[tuple[float, float]], which: int) -> str:
    return f"{statistics.median(run[which] for run in runs) * 1000:.0f}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(url: str, asked: list[str], clients: int, server_pid: int) -> None:
    t0, cpu0 = time.perf_counter(), process_cpu(server_pid)
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda q: post(url, q), asked))
    elapsed = time.perf_counter() - t0
    cpu_ms = (process_cpu(server_pid) - cpu0) / len(asked) * 1000
    ok = [s for status, s, _ in results if status == 200]
    refused = [(status, why) for status, _, why in results if status not in (0, 200)]
    lost = [why for status, _, why in results if status == 0]
    figures = f"p50 {percentile(ok, 0.5) * 1000:.0f} ms, p95 {percentile(ok, 0.95) * 1000:.0f} ms" if ok else "none"
    print(f"  {clients} client{'s' if clients > 1 else ''}, {len(asked)} requests: {figures}, "
          f"{len(asked) / elapsed:.1f} requests/s, server CPU {cpu_ms:.0f} ms a request; answered {len(ok)}, "
          f"refused {len(refused)}, lost {len(lost)}")
    for status, why in refused[:3]:
        print(f"    refused {status}: {why}")
    for why in lost[:3]:
        print(f"    lost: {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, help="a store to serve (default: the seed corpus, freshly ingested)")
    parser.add_argument("--requests", type=int, default=80, help="requests in the concurrent run")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh `rag ask` processes through the server")
    parser.add_argument("--backend", default="extractive")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        home = args.home or Path(tmp) / "home"
        env = environment(home)
        if args.home is None:
            print(f"ingesting {CORPUS} into {home} …", flush=True)
            subprocess.run([*RAG, "ingest", str(CORPUS)], env=env, check=True, capture_output=True)
        t0 = time.perf_counter()
        proc, url = start_server(env, args.backend, Path(tmp) / "serve.log")
        print(f"rag serve at {url} ({args.backend} backend), up in {time.perf_counter() - t0:.1f} s; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        try:
            asked = gold_questions()
            client_env = {**env, "RAG_SERVER_URL": url}
            wall([*RAG, "ask", asked[0]], client_env)  # the first answer of each question warms the server
            helps = [wall([*RAG, "--help"], env) for _ in range(args.cold_runs)]
            asks = [wall([*RAG, "ask", asked[0]], client_env) for _ in range(args.cold_runs)]
            print(f"rag ask through the server, {args.cold_runs} processes: median {median_ms(asks, 0)} ms wall "
                  f"(min {min(w for w, _ in asks) * 1000:.0f}), {median_ms(asks, 1)} ms CPU; `rag --help`: "
                  f"{median_ms(helps, 0)} ms wall, {median_ms(helps, 1)} ms CPU")
            print("/v1/ask, each question of the seed gold set in turn:")
            load(url, asked, 1, proc.pid)
            load(url, [asked[i % len(asked)] for i in range(args.requests)], args.clients, proc.pid)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            print(f"rag serve stopped (exit {code})")


if __name__ == "__main__":
    main()
