"""Readers for the Debian packages the real-world corpus is built from: fetching a pinned ``.deb``,
reading a Qt resource bundle (``.rcc``), and resolving a file's license from a machine-readable
Debian ``copyright`` file (DEP-5)."""

from __future__ import annotations

import fnmatch
import gzip
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

RCC_MAGIC = b"qres"
RCC_DIR, RCC_ZLIB, RCC_ZSTD = 2, 1, 4  # entry flags of the Qt resource format
MEDIA_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".svg", ".ogg", ".wav")


class SourceUnavailable(RuntimeError):
    """A pinned package could neither be found installed nor fetched with apt-get."""


def installed_version(package: str) -> str | None:
    """The version dpkg has installed, or None."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}|${Version}", package],
                             capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    status, _, version = out.stdout.partition("|")
    return version if out.returncode == 0 and status.endswith("installed") else None


def package_root(package: str, version: str, cache: Path) -> Path:
    """A folder whose ``usr/share/...`` holds the package's files at exactly ``version``.

    Uses the installed package when dpkg has that version, otherwise ``apt-get download`` into
    ``cache/debs`` and ``dpkg-deb -x`` into ``cache/src/<package>``."""
    if installed_version(package) == version:
        return Path("/")
    root = cache / "src" / f"{package}_{version}"
    if (root / ".complete").exists():
        return root
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    found = [d for d in found if _deb_version(d) == version]
    if not found:
        res = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=debs,
                             capture_output=True, text=True, check=False)
        found = [d for d in sorted(debs.glob(f"{package}_*.deb")) if _deb_version(d) == version]
        if res.returncode != 0 or not found:
            raise SourceUnavailable(
                f"cannot fetch {package}={version}: {res.stderr.strip()[-300:]} "
                f"(run `apt-get update` first, or `apt-get install {package}={version}`)")
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(found[0]), str(root)], check=True)
    (root / ".complete").touch()
    return root


def _deb_version(deb: Path) -> str:
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True,
                         check=False)
    return out.stdout.strip()


# -- Qt resource bundles ---------------------------------------------------------------------------
def rcc_files(path: Path) -> dict[str, bytes]:
    """Every file stored in a Qt ``.rcc`` bundle: resource path (``/gcompris/src/...``) -> bytes.

    Layout: header ``qres``, version, then offsets of the tree, data and name tables; a tree entry
    is 14 bytes (v1) or 22 bytes (v2+, with a modification time)."""
    buf = path.read_bytes()
    if buf[:4] != RCC_MAGIC:
        raise ValueError(f"{path} is not a Qt resource bundle")
    version, tree, data, names = struct.unpack(">IIII", buf[4:20])
    entry = 14 if version == 1 else 22

    def name(offset: int) -> str:
        n = struct.unpack(">H", buf[names + offset: names + offset + 2])[0]
        return buf[names + offset + 6: names + offset + 6 + 2 * n].decode("utf-16-be")

    def payload(flags: int, offset: int) -> bytes:
        size = struct.unpack(">I", buf[offset: offset + 4])[0]
        raw = buf[offset + 4: offset + 4 + size]
        if flags & RCC_ZLIB:
            return zlib.decompress(raw[4:])  # 4-byte big-endian uncompressed size first
        if flags & RCC_ZSTD:
            import zstandard  # only Qt 6 bundles built with zstd need it

            return zstandard.ZstdDecompressor().decompress(raw)
        return raw

    out: dict[str, bytes] = {}
    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        p = tree + index * entry
        name_off, flags = struct.unpack(">IH", buf[p: p + 6])
        here = prefix + ("/" + name(name_off) if index else "")
        if flags & RCC_DIR:
            count, first = struct.unpack(">II", buf[p + 6: p + 14])
            stack.extend((first + c, here) for c in range(count))
        else:
            out[here] = payload(flags, data + struct.unpack(">I", buf[p + 10: p + 14])[0])
    return out


# -- DEP-5 copyright files -------------------------------------------------------------------------
@dataclass(frozen=True)
class Stanza:
    patterns: tuple[str, ...]
    license: str
    copyright: str


def read_copyright(path: Path) -> list[Stanza]:
    """The ``Files:`` stanzas of a machine-readable Debian copyright file, in file order."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        text = f.read()
    stanzas = []
    for block in text.split("\n\n"):
        fields: dict[str, list[str]] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key].append(line.strip())
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = [value.strip()]
        if "Files" in fields and "License" in fields:
            patterns = tuple(p for line in fields["Files"] for p in line.split())
            stanzas.append(Stanza(patterns, fields["License"][0],
                                  " ".join(fields.get("Copyright", [""])).strip()))
    return stanzas


def license_of(stanzas: list[Stanza], path: str) -> str:
    """The license DEP-5 gives ``path`` (the last matching stanza wins). Bundled files are often
    re-encoded (``.jpg`` -> ``.webp``), so a pattern also matches on the name without suffix."""
    stem = path.rsplit(".", 1)[0] if path.lower().endswith(MEDIA_SUFFIXES) else path
    found = None
    for st in stanzas:
        for pat in st.patterns:
            pstem = pat.rsplit(".", 1)[0] if pat.lower().endswith(MEDIA_SUFFIXES) else pat
            if fnmatch.fnmatchcase(path, pat) or fnmatch.fnmatchcase(stem, pstem):
                found = st
                if pat == "*":
                    found = Stanza(st.patterns, st.license + " (package default)", st.copyright)
    if found is None:
        raise LookupError(f"no copyright stanza covers {path}")
    return found.license
