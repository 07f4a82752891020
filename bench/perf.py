"""The cost of the proxy on top of the upstream, measured against the floor, on what ships. `make bench` prints
one table and exits 1 when a figure misses its target.

- What ships, laid out as Lambda runs it: the function and the layer exactly as `sam build` makes them (bytecode
  included), the layer's twin for this machine's architecture when it is not arm64 (the same recipe and pins,
  only the platform differs), and boto3 byte-compiled, as the managed runtime provides it. Each probe is a fresh
  `python3.13 -I -S -B` process whose path is the function, the layer, then the runtime: nothing else is
  importable and no bytecode is written, as on Lambda's read-only file system.
- Cold: that process imports the handler and serves its first create request; beside it the floor (a script
  that imports boto3, pydantic and httpx, creates the same clients and makes the same raw calls: the caller's
  limit overrides read, the lock taken in one transaction with the reserve in the caller's day and hour counters,
  Dots, the completion in one transaction with the link's owner; storing what settling and listing need), in the
  same layout. The callers' limits are on for both (BENCH_LIMITS), high enough that no create is refused. The
  runs are interleaved and each figure is the median of RUNS processes, so machine noise falls on both alike. The
  same pair in the development venv (where Python wrote bytecode on first import) and the naive handler (every
  Powertools utility imported eagerly, Tracer included) are printed for comparison.
- Warm: CPU time per request in one shipped-layout process, for the handler and for the floor, new intent and
  replay, taking turns in chunks of 20; the ratio is the median of the chunks' ratios.
- Round trips per request, counted by botocore event hooks and the upstream emulator: a new intent and its
  replay, then a read and cancels of the bench caller's own links (a fresh link, the same link again, a link the
  payee claimed).
- Size of the function and the layer as `sam build` makes them, unzipped and zipped.
- Memory: peak RSS after 10 and after 1,000 warm requests.

Everything runs against a local moto server and the Dots emulator; no figure depends on a network.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from local_stack.core.aws_resources import clients, ensure_secret, ensure_table, start_moto_server  # noqa: E402
from local_stack.core.template import function_settings, load_template  # noqa: E402
from local_stack.dots_emulator import DEMO_API_KEY, DEMO_CLIENT_ID, DotsEmulator  # noqa: E402
from local_stack.stack import (  # noqa: E402
    CREDENTIALS_SECRET_NAME,
    FUNCTION,
    LOCAL_NAMES,
    OWNERS_TABLE_NAME,
    TABLE_NAME,
    TEMPLATE_PATH,
)

TOOLS_BIN = ROOT / ".venv-tools" / "bin"
DEV_BIN = ROOT / ".venv" / "bin"
DOCS_PAGE = ROOT / "docs" / "performance.md"
FIGURES_START, FIGURES_END = "<!-- figures: written by make bench -->", "<!-- end of figures -->"
UV_BIN = ROOT / ".venv-uv" / "bin"
TARGETS = {
    "cold/floor": 1.2,
    "warm CPU/floor": 1.2,
    "unzipped MB": 40.0,
    "zipped MB": 12.0,
    "RSS growth MB": 5.0,
}
# Round trips of a warm read or cancel of the caller's own link, at most: DynamoDB, Secrets Manager, upstream, new
# connections. A cancel the upstream accepts takes one upstream call; one it refuses (already canceled, claimed:
# answered 409) reads the link to decide, a second.
LIFECYCLE_BUDGETS = (
    ("read", "read", (1, 0, 1, 0)),
    ("cancel", "cancel", (1, 0, 1, 0)),
    ("cancel_again", "cancel again", (1, 0, 2, 0)),
    ("cancel_claimed", "cancel claimed", (1, 0, 2, 0)),
)
UPSTREAM_METHODS = (("creates", "POST"), ("reads", "GET"), ("cancels", "DEL"))
# The callers' limits on, as they ship, for the handler and the floor alike: every create reserves in its caller's
# day and hour counters in the lock's transaction. Far above the template's defaults, which would refuse the one
# bench caller's thousands of creates an hour (30 links).
BENCH_LIMITS = {"CALLER_DAILY_AMOUNT_LIMIT_CENTS": "1000000000000", "CALLER_HOURLY_LINK_LIMIT": "1000000000"}


@dataclass(frozen=True)
class Shipped:
    """The built function and layer, and the sys.path entries of a Lambda environment running them here."""

    build: Path
    sys_path: tuple[Path, ...]


def probe(kind: str, env: dict[str, str], shipped: Shipped | None = None) -> dict:
    """One probe in a fresh process: in the shipped layout when given, else in this venv."""
    command = [sys.executable, str(ROOT / "bench" / "probes.py"), kind]
    extra = {}
    if shipped is not None:
        command[1:1] = ["-I", "-S", "-B"]
        extra = {"BENCH_SYS_PATH": os.pathsep.join(map(str, shipped.sys_path)), "PYTHONDONTWRITEBYTECODE": "1"}
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        subprocess.run(
            command,
            env={**env, **extra, "BENCH_RESULT_FILE": result.name},
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=300,
        )
        return json.loads(Path(result.name).read_text())


def _run(command: list[str], cwd: Path, **env: str) -> None:
    # The pinned uv first on PATH, as `make build` has it: the layer's Makefile installs with it.
    path = f"{UV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    environment = {**os.environ, "PATH": path, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1", **env}
    subprocess.run(command, cwd=cwd, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)


def shipped_layout(work: Path) -> Shipped:
    """`sam build`, the layer's twin for this machine, and a byte-compiled boto3 like the runtime's."""
    sam = TOOLS_BIN / "sam"
    if not sam.exists():
        raise SystemExit("make bench measures the built artifact: run `make tools` first")
    build = work / "build"
    _run([str(sam), "build", "--template-file", str(ROOT / "template.yaml"), "--build-dir", str(build)], work)
    layer = build / "DependenciesLayer"
    machine = platform.machine().lower()
    if machine not in ("aarch64", "arm64"):
        layer = work / "layer-twin"
        _run(
            ["make", "-s", "build-DependenciesLayer", f"ARTIFACTS_DIR={layer}", f"PLATFORM={machine}"],
            ROOT / "layers" / "dependencies",
            PYTHON313=sys.executable,
        )
    runtime = work / "runtime"
    boto3 = f"boto3=={importlib.metadata.version('boto3')}"
    target = ["--target", str(runtime), "--python-version", "3.13", "--no-compile-bytecode"]
    wheels = ["--python-platform", f"{machine.replace('arm64', 'aarch64')}-manylinux2014"]
    _run([str(UV_BIN / "uv"), "pip", "install", "--quiet", *target, *wheels, boto3], work)
    _run([sys.executable, "-m", "compileall", "-q", "-j", "0", str(runtime)], work)
    return Shipped(build=build, sys_path=(build / FUNCTION, layer / "python", runtime))


def tree_size(path: Path) -> tuple[int, int]:
    """Bytes unzipped, and zipped the way `sam deploy` packages a directory (deflate)."""
    files = [file for file in sorted(path.rglob("*")) if file.is_file()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.write(file, file.relative_to(path))
    return sum(file.stat().st_size for file in files), buffer.tell()


def built_sizes(build: Path) -> dict[str, tuple[int, int]]:
    return {"function": tree_size(build / FUNCTION), "layer": tree_size(build / "DependenciesLayer")}


def median(samples: list[dict], key: str) -> float:
    return statistics.median(sample[key] for sample in samples)


def row(label: str, value: str, target: str = "", verdict: str = "") -> str:
    return f"| {label:<48} | {value:>22} | {target:>10} | {verdict:<4} |"


def check(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="fresh processes per cold figure (median)")
    parser.add_argument("--warm-runs", type=int, default=3, help="fresh processes for the warm figures (median)")
    parser.add_argument(
        "--no-docs", action="store_true", help="print the figures only; do not write them into docs/performance.md"
    )
    args = parser.parse_args()

    # A local moto server takes any credentials; never a real account's.
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench-not-a-key",
            "AWS_SECRET_ACCESS_KEY": "bench-not-a-key",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
    with tempfile.TemporaryDirectory() as work:
        shipped = shipped_layout(Path(work))
        sizes = built_sizes(shipped.build)
        cold, warm = measure(shipped, args.runs, args.warm_runs)
    return report(cold, warm, sizes, args.runs, write_docs=not args.no_docs)


# Cold probes, in the order each round runs them: (label, probe, shipped layout?).
COLD = (
    ("handler", "cold-handler", True),
    ("floor", "cold-floor", True),
    ("venv handler", "cold-handler", False),
    ("venv floor", "cold-floor", False),
    ("naive", "cold-naive", False),
)


def measure(shipped: Shipped, runs: int, warm_runs: int) -> tuple[dict[str, list[dict]], list[dict]]:
    moto, endpoint = start_moto_server()
    emulator = DotsEmulator(DEMO_CLIENT_ID, DEMO_API_KEY).start()
    try:
        dynamodb, secrets = clients(endpoint, "us-east-1")
        template = load_template(TEMPLATE_PATH)
        ensure_table(dynamodb, template, "IdempotencyTable", TABLE_NAME)
        ensure_table(dynamodb, template, "LinkOwnersTable", OWNERS_TABLE_NAME)
        ensure_secret(
            secrets, CREDENTIALS_SECRET_NAME, {"client_id": DEMO_CLIENT_ID, "api_key": DEMO_API_KEY}, overwrite=True
        )
        function_env = function_settings(template, FUNCTION, LOCAL_NAMES).environment
        env = {
            **os.environ,
            **function_env,
            "PAYOUT_API_BASE_URL": emulator.base_url,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_LAMBDA_FUNCTION_NAME": "payout-link-proxy-bench",
            **BENCH_LIMITS,
        }
        cold: dict[str, list[dict]] = {label: [] for label, _, _ in COLD}
        for _ in range(runs):  # interleaved: whatever else the machine does falls on every variant
            for label, kind, in_layout in COLD:
                cold[label].append(probe(kind, env, shipped if in_layout else None))
        warm = [probe("warm", env, shipped) for _ in range(warm_runs)]
    finally:
        emulator.stop()
        moto.stop()
    return cold, warm


def report(
    cold: dict[str, list[dict]],
    warm: list[dict],
    sizes: dict[str, tuple[int, int]],
    runs: int,
    *,
    write_docs: bool,
) -> int:
    """Print the table and write it into docs/performance.md; 1 when any figure misses its target."""
    missed: list[str] = []
    lines: list[str] = []
    emit = lines.append

    def judged(label: str, value: float, text: str, limit: float) -> str:
        verdict = check(value, limit)
        if verdict != "ok":
            missed.append(label)
        return row(label, text, f"<= {limit:g}", verdict)

    total = {label: median(samples, "total_ms") for label, samples in cold.items()}
    imports = {label: median(samples, "import_ms") for label, samples in cold.items()}
    cold_ratio = statistics.median(
        h["total_ms"] / f["total_ms"] for h, f in zip(cold["handler"], cold["floor"], strict=True)
    )
    venv_ratio = statistics.median(
        h["total_ms"] / f["total_ms"] for h, f in zip(cold["venv handler"], cold["venv floor"], strict=True)
    )
    new_ratio, replay_ratio = median(warm, "new_ratio"), median(warm, "replay_ratio")
    rss_10, rss_1000 = median(warm, "rss_after_10_mb"), median(warm, "rss_after_1000_mb")
    trips = warm[0]["round_trips"]
    assert all(sample["round_trips"] == trips for sample in warm), "round trips differ between runs"

    emit(
        f"payout-link-proxy performance, as shipped: medians of {runs} fresh processes per cold figure "
        f"(Python {sys.version.split()[0]}, {platform.machine()})"
    )
    emit(row("figure", "measured", "target", ""))
    emit(row("-" * 48, "-" * 22, "-" * 10, "-" * 4))
    emit(row("cold, shipped: import + first create, handler", f"{total['handler']:.0f} ms"))
    emit(row("cold, shipped: same work, floor", f"{total['floor']:.0f} ms"))
    emit(row("  of which imports: handler / floor", "{:.0f} / {:.0f} ms".format(imports["handler"], imports["floor"])))
    emit(judged("cold/floor, shipped", cold_ratio, f"{cold_ratio:.2f}", TARGETS["cold/floor"]))
    emit(
        row(
            "cold, dev venv (bytecode written): handler / floor",
            "{:.0f} / {:.0f} ms".format(total["venv handler"], total["venv floor"]),
        )
    )
    emit(row("cold/floor, dev venv (not what ships)", f"{venv_ratio:.2f}"))
    emit(row("cold, dev venv: naive Powertools handler", f"{total['naive']:.0f} ms"))
    emit(
        row(
            "warm CPU, new intent: handler / floor",
            "{:.2f} / {:.2f} ms".format(median(warm, "handler_new_ms"), median(warm, "floor_new_ms")),
        )
    )
    emit(judged("warm CPU/floor, new intent", new_ratio, f"{new_ratio:.2f}", TARGETS["warm CPU/floor"]))
    emit(
        row(
            "warm CPU, replay: handler / floor",
            "{:.2f} / {:.2f} ms".format(median(warm, "handler_replay_ms"), median(warm, "floor_replay_ms")),
        )
    )
    emit(judged("warm CPU/floor, replay", replay_ratio, f"{replay_ratio:.2f}", TARGETS["warm CPU/floor"]))
    for name, target in (("new_intent", (2, 0, 1, 0)), ("replay", (1, 0, 0, 0))):
        counts = trips[name]
        measured = (counts["dynamodb"], counts["secretsmanager"], counts["upstream"], counts["new_connections"])
        ok = measured[0] <= target[0] and measured[1:] == target[1:] if name == "replay" else measured == target
        if not ok:
            missed.append(name)
        emit(
            row(
                f"round trips, warm {name.replace('_', ' ')}: DDB/SM/up/conn",
                "/".join(map(str, measured)),
                "/".join(map(str, target)),
                "ok" if ok else "MISS",
            )
        )
    # Reads and cancels of the caller's own links: at most one DynamoDB call (the owner record), no secret read,
    # no new connection; one upstream call, two when the upstream refuses the DELETE (then the link is read).
    for name, label, target in LIFECYCLE_BUDGETS:
        counts = trips[name]
        measured = (counts["dynamodb"], counts["secretsmanager"], counts["upstream"], counts["new_connections"])
        ok = all(count <= limit for count, limit in zip(measured, target, strict=True))
        if not ok:
            missed.append(name)
        calls = ", ".join(f"{counts[kind]} {method}" for kind, method in UPSTREAM_METHODS if counts[kind])
        emit(
            row(
                f"round trips, warm {label}: DDB/SM/up/conn",
                "/".join(map(str, measured)) + (f" ({calls})" if calls else ""),
                "<= " + "/".join(map(str, target)),
                "ok" if ok else "MISS",
            )
        )
    unzipped = (sizes["function"][0] + sizes["layer"][0]) / 1e6
    zipped = (sizes["function"][1] + sizes["layer"][1]) / 1e6
    emit(judged("size: function + layer, unzipped", unzipped, f"{unzipped:.2f} MB", TARGETS["unzipped MB"]))
    emit(judged("size: function + layer, zipped", zipped, f"{zipped:.2f} MB", TARGETS["zipped MB"]))
    emit(
        row(
            "  function / layer, zipped",
            "{:.0f} / {:.0f} kB".format(sizes["function"][1] / 1e3, sizes["layer"][1] / 1e3),
        )
    )
    emit(row("peak RSS after 10 / 1,000 warm requests", f"{rss_10:.1f} / {rss_1000:.1f} MB"))
    growth = rss_1000 - rss_10
    emit(judged("RSS growth 10 -> 1,000", growth, f"{growth:.1f} MB", TARGETS["RSS growth MB"]))
    print("\n".join(lines))
    if write_docs:
        write_figures(lines)
    if missed:
        print(f"FAIL: missed {', '.join(missed)}")
        for name in missed:
            if name in trips:
                print(f"  {name}: {json.dumps(trips[name])}")
        return 1
    return 0


def write_figures(lines: list[str]) -> None:
    """Replace the figures in docs/performance.md (between its markers) by this run's, dated, so that the
    document always shows what the benchmark last measured and never a number typed by hand."""
    document = DOCS_PAGE.read_text(encoding="utf-8")
    start, end = document.index(FIGURES_START) + len(FIGURES_START), document.index(FIGURES_END)
    heading, table = lines[0], lines[1:]
    figures = f"\n{heading}, on {datetime.date.today().isoformat()}:\n\n" + "\n".join(table) + "\n"
    DOCS_PAGE.write_text(document[:start] + figures + document[end:], encoding="utf-8")
    print(f"wrote the figures into {DOCS_PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
