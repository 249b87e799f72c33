"""Content checksums sealed into the exported files, and zip CRC checks (torch-free).

A flipped byte in a weight of a TorchScript or ONNX file still loads and silently gives other
names (many random single-bit flips do: soak's corruption section flips them). So every export
carries a SHA-256 of its own content, and every loader recomputes it:

- TorchScript (a zip archive): the extra file `charrnn.sha256` holds the SHA-256 over every
  other member (name and bytes, sorted by name; the archive's folder name and the random
  `.data/serialization_id` left out). Reading the members also checks each one's CRC-32.
- ONNX (a protobuf): one more `metadata_props` entry, `charrnn.sha256`, appended as the last
  bytes of the file, holds the SHA-256 of all the bytes before it. A repeated field may be
  appended to a protobuf message, so ONNX Runtime and `onnx` load the file as before.

Checkpoints (torch.save's zip) carry the weights+vocabulary fingerprint, recomputed on load;
`check_zip` adds the CRC-32 of every member. A file without its checksum is refused too: it was
written by an older export or altered (re-export it with `make export`).
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

from core.errors import ArtifactError

SEAL_KEY = "charrnn.sha256"  # TorchScript extra-file name and ONNX metadata_props key
_TS_SKIP = (f"extra/{SEAL_KEY}", ".data/serialization_id")
_REEXPORT = "re-export it (make export)"


def _member_name(info: zipfile.ZipInfo) -> str:
    """A member's name without the archive's own folder (torch names it after the file)."""
    return info.filename.split("/", 1)[1] if "/" in info.filename else info.filename


def _zip_problem(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def zip_digest(path: str | Path) -> tuple[str, str | None]:
    """(SHA-256 over the members a TorchScript seal covers, the sealed value or None).

    Reads every member, so a damaged member (CRC-32) or directory raises ArtifactError."""
    path = Path(path)
    digest = hashlib.sha256()
    sealed = None
    try:
        with zipfile.ZipFile(path) as archive:
            for info in sorted(archive.infolist(), key=_member_name):
                name = _member_name(info)
                data = archive.read(info)  # checks the member's CRC-32
                if name == _TS_SKIP[0]:
                    sealed = data.decode("ascii", errors="replace").strip()
                    continue
                if name == _TS_SKIP[1]:
                    continue
                digest.update(len(name).to_bytes(4, "big") + name.encode("utf-8"))
                digest.update(len(data).to_bytes(8, "big") + data)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, KeyError,
            NotImplementedError, RuntimeError, UnicodeDecodeError, zlib.error) as exc:
        raise ArtifactError(f"{path}: damaged zip archive (truncated or corrupted): {_zip_problem(exc)}") from None
    return digest.hexdigest(), sealed


def check_zip(path: str | Path) -> None:
    """Every member of the zip archive at `path` reads back with its CRC-32 (ArtifactError otherwise)."""
    zip_digest(path)


def check_torchscript(path: str | Path) -> None:
    """The TorchScript file's members are intact and match its sealed checksum."""
    actual, sealed = zip_digest(path)
    if sealed is None:
        raise ArtifactError(f"{path}: no integrity checksum (extra file {SEAL_KEY!r}): written by an "
                            f"older export or altered; {_REEXPORT}")
    if sealed != actual:
        raise ArtifactError(f"{path}: checksum mismatch (content sha256 {actual[:16]}..., sealed "
                            f"{sealed[:16]}...): the file is corrupted or was altered; {_REEXPORT}")


def _onnx_trailer(hexdigest: str) -> bytes:
    key, value = SEAL_KEY.encode("ascii"), hexdigest.encode("ascii")
    entry = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(value)]) + value
    return b"\x72" + bytes([len(entry)]) + entry  # field 14 (metadata_props), length-delimited


def seal_onnx(data: bytes) -> bytes:
    """The serialized ONNX model with its checksum entry appended."""
    return bytes(data) + _onnx_trailer(hashlib.sha256(data).hexdigest())


def check_onnx(data: bytes, source: str, metadata: Mapping[str, str]) -> None:
    """`data` (a whole ONNX file; `metadata` its metadata_props) matches its sealed checksum."""
    sealed = metadata.get(SEAL_KEY)
    if sealed is None:
        raise ArtifactError(f"{source}: no integrity checksum ({SEAL_KEY!r} metadata): written by an "
                            f"older export or altered; {_REEXPORT}")
    if len(sealed) != 64 or not sealed.isascii():
        raise ArtifactError(f"{source}: malformed integrity checksum: the file is corrupted; {_REEXPORT}")
    trailer = _onnx_trailer(sealed)
    if not data.endswith(trailer):
        raise ArtifactError(f"{source}: the integrity checksum is not the file's last entry: the file "
                            f"was altered or re-saved; {_REEXPORT}")
    actual = hashlib.sha256(data[: len(data) - len(trailer)]).hexdigest()
    if actual != sealed:
        raise ArtifactError(f"{source}: checksum mismatch (content sha256 {actual[:16]}..., sealed "
                            f"{sealed[:16]}...): the file is corrupted or was altered; {_REEXPORT}")
