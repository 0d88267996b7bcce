"""List the files a Debian minbase root filesystem with the given packages holds, taken from this
(Debian) host's installed packages instead of downloaded and unpacked again by debootstrap:
the required and essential packages plus the given ones, closed over their Pre-Depends and
Depends. Used by stand-in-base.sh.

Usage: python3 host_files.py python3,python3-venv,...   (NUL-separated paths relative to /)
Exits non-zero, saying why, when the host lacks a package (the caller falls back to debootstrap).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FORMAT = "${Package}\t${db:Status-Abbrev}\t${Priority}\t${Essential}\t${Provides}\t"
FORMAT += "${Pre-Depends}, ${Depends}\n"


def _name(relation: str) -> str:
    return relation.split()[0].split(":")[0]  # "libc6:any (>= 2.34)" -> "libc6"


def packages(includes: list[str]) -> list[str]:
    """The installed packages a minbase root filesystem with `includes` would hold."""
    query = subprocess.run(
        ["dpkg-query", "-W", f"-f={FORMAT}"], capture_output=True, text=True, check=True
    )
    depends: dict[str, str] = {}
    providers: dict[str, str] = {}
    base: list[str] = []
    for line in query.stdout.splitlines():
        name, status, priority, essential, provides, relations = line.split("\t")
        if not status.startswith("ii"):
            continue
        depends[name] = relations
        for virtual in filter(str.strip, provides.split(",")):
            providers.setdefault(_name(virtual), name)
        if priority == "required" or essential == "yes":
            base.append(name)
    missing = [name for name in includes if name not in depends]
    if missing:
        sys.exit(f"not installed on this host: {' '.join(missing)}")
    todo, chosen = [*base, *includes], set()
    while todo:
        name = todo.pop()
        if name in chosen:
            continue
        chosen.add(name)
        for group in filter(str.strip, depends[name].split(",")):
            options = [_name(option) for option in group.split("|")]
            found = [
                o if o in depends else providers[o]
                for o in options
                if o in depends or o in providers
            ]
            if not found:
                sys.exit(f"{name} needs one of {options}, none of them installed on this host")
            todo.append(found[0])
    return sorted(chosen)


def files(names: list[str]) -> list[str]:
    """The packages' paths, with directories resolved (merged /usr: /bin/sh is usr/bin/sh), plus
    the byte code their postinst compiled (debootstrap's root filesystem has it too)."""
    listed = subprocess.run(
        ["dpkg-query", "-L", *names], capture_output=True, text=True, check=True
    ).stdout
    paths: set[Path] = set()
    for line in listed.splitlines():
        if not line.startswith("/") or line == "/.":
            continue  # "diverted by ..." notes
        path = Path(line).parent.resolve() / Path(line).name
        if path.parent == Path("/") and path.is_symlink():
            continue  # /bin, /lib...: the merged-/usr links, which the caller makes
        if not path.is_symlink() and not path.exists():
            continue
        paths.add(path)
        if path.suffix == ".py":
            cached = path.parent / "__pycache__" / f"{path.stem}.cpython-311.pyc"
            if cached.exists():
                paths.update((cached.parent, cached))
    return sorted(str(path.relative_to("/")) for path in paths)


if __name__ == "__main__":
    sys.stdout.write("".join(f"{path}\0" for path in files(packages(sys.argv[1].split(",")))))
