"""The cost of the proxy on top of the upstream, measured against the floor. `make bench` prints one table.

- Cold: a fresh process imports the handler and serves its first create request; beside it the floor (a script
  that imports boto3, pydantic and httpx, creates the same clients and makes the same raw calls) and the naive
  handler (every Powertools utility imported eagerly, Tracer included). The runs are interleaved and each
  figure is the median of RUNS fresh processes, so machine noise falls on all three alike.
- Warm: CPU time per request in one process, for the handler and for the floor, new intent and replay, taking
  turns in chunks of 20; the ratio is the median of the chunks' ratios.
- Round trips per request, counted by botocore event hooks and the upstream emulator: a new intent and its
  replay, then a read and cancels of the bench caller's own links (a fresh link, the same link again, a link the
  payee claimed). Round trips are exact counts, not timings: any over its budget fails the bench (exit 1).
- Size of the function and the layer as `sam build` makes them for the template, unzipped and zipped.
- Memory: peak RSS after 10 and after 1,000 warm requests.

Everything runs against a local moto server and the Dots emulator; no figure depends on a network.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]

from local_stack.aws_resources import clients, ensure_secret, ensure_table, start_moto_server  # noqa: E402
from local_stack.dots_emulator import DEMO_API_KEY, DEMO_CLIENT_ID, DotsEmulator  # noqa: E402
from local_stack.stack import (  # noqa: E402
    CREDENTIALS_SECRET_NAME,
    FUNCTION,
    LOCAL_NAMES,
    OWNERS_TABLE_NAME,
    TABLE_NAME,
)
from local_stack.template import function_settings  # noqa: E402

TOOLS_BIN = ROOT / ".venv-tools" / "bin"
TARGETS = {
    "cold/floor": 1.3,
    "warm CPU/floor": 1.3,
    "unzipped MB": 15.0,
    "zipped MB": 5.0,
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


def probe(kind: str, env: dict[str, str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "probes.py"), kind],
            env={**env, "BENCH_RESULT_FILE": result.name},
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=300,
        )
        return json.loads(Path(result.name).read_text())


def tree_size(path: Path) -> tuple[int, int]:
    """Bytes unzipped, and zipped the way `sam deploy` packages a directory (deflate)."""
    files = [file for file in sorted(path.rglob("*")) if file.is_file()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.write(file, file.relative_to(path))
    return sum(file.stat().st_size for file in files), buffer.tell()


def built_sizes() -> dict[str, tuple[int, int]] | None:
    sam = TOOLS_BIN / "sam"
    if not sam.exists():
        return None
    with tempfile.TemporaryDirectory() as work:
        build = Path(work) / "build"
        subprocess.run(
            [str(sam), "build", "--template-file", str(ROOT / "template.yaml"), "--build-dir", str(build)],
            cwd=work,
            env={**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        return {"function": tree_size(build / FUNCTION), "layer": tree_size(build / "DependenciesLayer")}


def median(samples: list[dict], key: str) -> float:
    return statistics.median(sample[key] for sample in samples)


def row(label: str, value: str, target: str = "", verdict: str = "") -> str:
    return f"| {label:<48} | {value:>22} | {target:>10} | {verdict:<4} |"


def check(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per figure (median)")
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
    moto, endpoint = start_moto_server()
    emulator = DotsEmulator(DEMO_CLIENT_ID, DEMO_API_KEY).start()
    try:
        dynamodb, secrets = clients(endpoint, "us-east-1")
        ensure_table(dynamodb, "IdempotencyTable", TABLE_NAME)
        ensure_table(dynamodb, "LinkOwnersTable", OWNERS_TABLE_NAME)
        ensure_secret(
            secrets, CREDENTIALS_SECRET_NAME, {"client_id": DEMO_CLIENT_ID, "api_key": DEMO_API_KEY}, overwrite=True
        )
        function_env, _, _ = function_settings(
            FUNCTION,
            LOCAL_NAMES,
        )
        env = {
            **os.environ,
            **function_env,
            "PAYOUT_API_BASE_URL": emulator.base_url,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_LAMBDA_FUNCTION_NAME": "payout-link-proxy-bench",
        }
        cold: dict[str, list[dict]] = {"cold-handler": [], "cold-floor": [], "cold-naive": []}
        for _ in range(args.runs):
            for kind, samples in cold.items():
                samples.append(probe(kind, env))
        warm = [probe("warm", env) for _ in range(args.runs)]
    finally:
        emulator.stop()
        moto.stop()
    sizes = built_sizes()

    handler_ms, floor_ms, naive_ms = (median(cold[kind], "total_ms") for kind in cold)
    new_ratio, replay_ratio = median(warm, "new_ratio"), median(warm, "replay_ratio")
    rss_10, rss_1000 = median(warm, "rss_after_10_mb"), median(warm, "rss_after_1000_mb")
    trips = warm[0]["round_trips"]
    assert all(sample["round_trips"] == trips for sample in warm), "round trips differ between runs"

    print(f"payout-link-proxy performance: medians of {args.runs} fresh processes (Python {sys.version.split()[0]})")
    print(row("figure", "measured", "target", ""))
    print(row("-" * 48, "-" * 22, "-" * 10, "-" * 4))
    print(row("cold: import + first create, handler", f"{handler_ms:.0f} ms"))
    print(row("cold: same work, floor", f"{floor_ms:.0f} ms"))
    print(row("cold: naive Powertools handler", f"{naive_ms:.0f} ms"))
    print(
        row(
            "  of which imports: handler / floor / naive",
            "{:.0f} / {:.0f} / {:.0f} ms".format(*(median(cold[kind], "import_ms") for kind in cold)),
        )
    )
    print(row("cold/floor", f"{handler_ms / floor_ms:.2f}", "<= 1.3", check(handler_ms / floor_ms, 1.3)))
    print(row("cold/naive", f"{handler_ms / naive_ms:.2f}"))
    print(
        row(
            "warm CPU, new intent: handler / floor",
            "{:.2f} / {:.2f} ms".format(median(warm, "handler_new_ms"), median(warm, "floor_new_ms")),
        )
    )
    print(row("warm CPU/floor, new intent", f"{new_ratio:.2f}", "<= 1.3", check(new_ratio, 1.3)))
    print(
        row(
            "warm CPU, replay: handler / floor",
            "{:.2f} / {:.2f} ms".format(median(warm, "handler_replay_ms"), median(warm, "floor_replay_ms")),
        )
    )
    print(row("warm CPU/floor, replay", f"{replay_ratio:.2f}", "<= 1.3", check(replay_ratio, 1.3)))
    over_budget: list[str] = []
    for name, target in (("new_intent", (2, 0, 1, 0)), ("replay", (1, 0, 0, 0))):
        counts = trips[name]
        measured = (counts["dynamodb"], counts["secretsmanager"], counts["upstream"], counts["new_connections"])
        ok = measured[0] <= target[0] and measured[1:] == target[1:] if name == "replay" else measured == target
        if not ok:
            over_budget.append(name)
        print(
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
            over_budget.append(name)
        calls = ", ".join(f"{counts[kind]} {method}" for kind, method in UPSTREAM_METHODS if counts[kind])
        print(
            row(
                f"round trips, warm {label}: DDB/SM/up/conn",
                "/".join(map(str, measured)) + (f" ({calls})" if calls else ""),
                "<= " + "/".join(map(str, target)),
                "ok" if ok else "MISS",
            )
        )
    if sizes:
        unzipped = (sizes["function"][0] + sizes["layer"][0]) / 1e6
        zipped = (sizes["function"][1] + sizes["layer"][1]) / 1e6
        print(row("size: function + layer, unzipped", f"{unzipped:.2f} MB", "<= 15", check(unzipped, 15)))
        print(row("size: function + layer, zipped", f"{zipped:.2f} MB", "<= 5", check(zipped, 5)))
        print(
            row(
                "  function / layer, zipped",
                "{:.0f} / {:.0f} kB".format(sizes["function"][1] / 1e3, sizes["layer"][1] / 1e3),
            )
        )
    else:
        print(row("size", "n/a: run make tools"))
    print(row("peak RSS after 10 / 1,000 warm requests", f"{rss_10:.1f} / {rss_1000:.1f} MB"))
    print(row("RSS growth 10 -> 1,000", f"{rss_1000 - rss_10:.1f} MB", "<= 5", check(rss_1000 - rss_10, 5)))
    if over_budget:
        print(f"FAIL: round trips over budget: {', '.join(over_budget)}")
        for name in over_budget:
            print(f"  {name}: {json.dumps(trips[name])}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
