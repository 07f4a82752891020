"""Audit the layer's locked requirements for known vulnerabilities (`make audit`); never pass without data.

    .venv-audit/bin/python scripts/audit.py [--service pypi|osv] [--osv-url URL] REQUIREMENTS

pip-audit reads the hashed requirements as they are (`--require-hashes --disable-pip`: nothing is resolved or
installed) and asks a vulnerability service about each pinned version: PyPI's JSON API (the default; it also
checks every hash against PyPI's) or OSV. Two things would otherwise let an audit pass silently, and both are
refused here:

- The service cannot be reached, or answers without vulnerability data (a mirror of the package index that
  serves no per-version JSON, for one): this is checked first, and said, and the exit is 2.
- pip-audit skips a package it cannot look up and still reports "No known vulnerabilities found" with exit 0:
  `--strict` makes any skip fatal.

Exit 0: every package was looked up and none has a known vulnerability; 1: a vulnerability or a skip; 2: no
vulnerability data could be reached. Runs in .venv-audit (pip-audit's own environment, with requests).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import requests

PYPI_JSON = "https://pypi.org/pypi/{name}/{version}/json"
OSV_URL = "https://api.osv.dev/v1/query"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
TIMEOUT_SECONDS = 15


def first_pin(requirements: Path) -> tuple[str, str]:
    for line in requirements.read_text().splitlines():
        match = PIN.match(line)
        if match:
            return match[1], match[2]
    raise SystemExit(f"{requirements} pins no package")


def unreachable(service: str, osv_url: str, name: str, version: str) -> str | None:
    """Why the service cannot give vulnerability data for one locked package, or None when it can."""
    try:
        if service == "pypi":
            url = PYPI_JSON.format(name=name, version=version)
            response = requests.get(url, timeout=TIMEOUT_SECONDS)
        else:
            url = osv_url
            query = {"package": {"name": name, "ecosystem": "PyPI"}, "version": version}
            response = requests.post(url, json=query, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as error:
        return f"{url} could not be reached ({type(error).__name__}: {error})"
    if response.status_code != 200:
        return f"{url} answered {response.status_code}, not vulnerability data for {name} {version}"
    try:
        answer = response.json()
    except ValueError:
        return f"{url} answered something other than JSON"
    if service == "pypi" and "vulnerabilities" not in answer:
        return f"{url} answered without a vulnerabilities field"
    if service == "osv" and not isinstance(answer, dict):
        return f"{url} answered something other than an OSV result"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requirements", type=Path)
    parser.add_argument("--service", choices=("pypi", "osv"), default="pypi")
    parser.add_argument("--osv-url", default=OSV_URL)
    args = parser.parse_args()

    name, version = first_pin(args.requirements)
    reason = unreachable(args.service, args.osv_url, name, version)
    if reason is not None:
        print(
            f"AUDIT NOT DONE: no vulnerability data from {args.service}: {reason}.\n"
            "Nothing was checked; this is a failure, not a pass. Run `make audit` where the service is reachable "
            "(--service osv asks OSV instead of PyPI).",
            file=sys.stderr,
        )
        return 2
    command = [
        str(Path(sys.executable).with_name("pip-audit")),
        "--requirement",
        str(args.requirements),
        "--require-hashes",
        "--disable-pip",
        "--strict",
        "--progress-spinner",
        "off",
        "--vulnerability-service",
        args.service,
    ]
    if args.service == "osv":
        command += ["--osv-url", args.osv_url]
    return subprocess.run(command, check=False).returncode  # noqa: S603 - pip-audit, with our own arguments


if __name__ == "__main__":
    sys.exit(main())
