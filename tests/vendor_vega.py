"""Write .dvc/plots/offline.html, the `dvc plots show` page template with vega, vega-lite
and vega-embed inlined, so the page renders with no network (DVC's own page loads them
from a CDN), and their licences beside it.

    npm pack vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0      # the npm registry's tarballs
    python tests/vendor_vega.py --write vega-5.33.1.tgz vega-lite-5.23.0.tgz vega-embed-6.29.0.tgz

Without --write it checks that the template holds the versions VERSIONS names.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLOTS = ROOT / ".dvc" / "plots"
TEMPLATE = PLOTS / "offline.html"
VENDOR = PLOTS / "vendor"
VERSIONS = {"vega": "5.33.1", "vega-lite": "5.23.0", "vega-embed": "6.29.0"}  # load order
BUILDS = {"vega": "build/vega.min.js", "vega-lite": "build/vega-lite.min.js", "vega-embed": "build/vega-embed.min.js"}

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>faceid: DVC plots</title>
    <!-- The DVC plots page of this project (.dvc/config: plots.html_template), with
         {names} inlined from the npm registry's packages so that it renders with no
         network; DVC's default page loads them from a CDN. Licences: .dvc/plots/vendor/.
         Rebuilt by tests/vendor_vega.py. -->
{scripts_inline}
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def _member(archive: tarfile.TarFile, name: str) -> bytes | None:
    try:
        member = archive.extractfile(f"package/{name}")
    except KeyError:
        return None
    return member.read() if member else None


def read_package(path: Path) -> dict:
    """name, version, license, the minified build and the LICENSE text (if shipped) of an npm tarball."""
    data = path.read_bytes()
    with tarfile.open(path) as archive:
        meta = json.loads(_member(archive, "package.json"))
        build = _member(archive, BUILDS[meta["name"]]).decode("utf8")
        licence = _member(archive, "LICENSE")
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    return {"name": meta["name"], "version": meta["version"], "license": meta["license"], "build": build,
            "licence_text": licence.decode("utf8") if licence else None, "integrity": integrity}  # fmt: skip


def render_page(packages: list[dict]) -> str:
    scripts = []
    for package in packages:
        if "</script" in package["build"].lower():
            raise SystemExit(f"{package['name']}: its build holds '</script': cannot be inlined")
        banner = (f"/*! {package['name']} {package['version']} ({package['license']}), "
                  f"npm integrity {package['integrity']} */")
        scripts.append(f"    <script>{banner}\n{package['build']}\n    </script>")
    names = ", ".join(f"{p['name']} {p['version']}" for p in packages)
    return PAGE.replace("{names}", names).replace("{scripts_inline}", "\n".join(scripts))


def write(tarballs: list[Path]) -> None:
    packages = {p["name"]: p for p in map(read_package, tarballs)}
    wrong = {n: p["version"] for n, p in packages.items() if VERSIONS.get(n) != p["version"]}
    if wrong or set(packages) != set(VERSIONS):
        raise SystemExit(
            f"expected {VERSIONS}, got { ({n: p['version'] for n, p in packages.items()}) }; edit VERSIONS first"
        )
    ordered = [packages[name] for name in VERSIONS]
    TEMPLATE.write_text(render_page(ordered), encoding="utf8")
    VENDOR.mkdir(exist_ok=True)
    for package in ordered:
        if package["licence_text"]:
            (VENDOR / f"LICENSE-{package['name']}.txt").write_text(package["licence_text"], encoding="utf8")
        elif not (VENDOR / f"LICENSE-{package['name']}.txt").exists():
            print(
                f"{package['name']} ships no LICENSE file: add {VENDOR}/LICENSE-{package['name']}.txt by hand",
                file=sys.stderr,
            )
    print(f"{TEMPLATE}: {TEMPLATE.stat().st_size} bytes ({', '.join(f'{n} {v}' for n, v in VERSIONS.items())})")


def inlined_versions(page: str) -> dict[str, str]:
    """{name: version} of the scripts a template inlines (their banners)."""
    return dict(re.findall(r"<script>/\*! (\S+) (\S+) \(", page))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tarballs", nargs="*", type=Path, help="npm pack's .tgz of vega, vega-lite, vega-embed")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.write:
        write(args.tarballs)
    else:
        found = inlined_versions(TEMPLATE.read_text(encoding="utf8"))
        print("ok" if found == VERSIONS else f"{TEMPLATE}: inlines {found}, expected {VERSIONS}")
        sys.exit(0 if found == VERSIONS else 1)
