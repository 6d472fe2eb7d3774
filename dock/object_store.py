"""The agency store on S3 with Object Lock (issue 27), through boto3 only.

    store = AgencyBucket.connect(StoreConfig.load("s3://evidence", endpoint, credentials))
    store.ensure_bucket()          # made with Object Lock; one without it is refused
    store.put_verified(key, path, sha256_hex, Lock(until, hold=False))

Every object goes in with its SHA-256 as the S3 checksum (x-amz-checksum-
sha256: the store hashes what it received and refuses a mismatch), in
COMPLIANCE mode until `Lock.until` (nobody, the store's administrator
included, may delete it or shorten that date through S3), with a legal hold
when the recording is held; then it is read back (GET of that version,
hashed here) before the caller may say it is stored. Retention is only ever
extended here; a shorter date is never sent (and the store refuses it).

Credentials come from a TOML file that only its owner may read
(`access_key`, `secret_key`, optional `region`), or from the environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), never from the command line.
The endpoint is http or https; `ca` names a CA bundle for https. Every
request has bounded connect and read timeouts and a bounded number of
retries (botocore's standard mode). What the store cannot be reached for
raises `StoreUnreachable` (an OSError: the sync stops and a rerun resumes);
what the store refuses raises `StoreRefused` with its code.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from .texts import Msg, Texts, msg

BLOCK = 1024 * 1024
SCHEME = "s3://"
# S3's bucket names (the common rules every store accepts)
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
COMPLIANCE = "COMPLIANCE"


class StoreConfigError(ValueError):
    """The store cannot be configured as given; the Msg says why, in one line."""


class StoreRefused(Exception):
    """The store answered with a refusal (`code`: AccessDenied, BadDigest, ...)."""

    def __init__(self, what: Msg | str, code: str) -> None:
        super().__init__(what)
        self.code = code


class StoreUnreachable(OSError):
    """The store could not be reached or did not answer in time (after retries)."""


class ReadBackMismatch(Exception):
    """An object read back from the store does not hash to what was written."""


@dataclass(frozen=True)
class Lock:
    """How an object is locked: COMPLIANCE retention until `until` (UTC),
    and a legal hold or not."""

    until: datetime
    hold: bool = False
    # no hold, and the dock's index registers a hold released (or a class
    # lowered) for it: a legal hold found on the object may be taken off
    lifted: bool = False

    def covering(self, other: Lock) -> Lock:
        """The lock that keeps an object as long as both would."""
        hold = self.hold or other.hold
        return Lock(max(self.until, other.until), hold,
                    not hold and (self.lifted or other.lifted))  # fmt: skip


@dataclass(frozen=True)
class Head:
    """What the store says of an object's current version."""

    key: str
    version_id: str | None
    size: int
    sha256: str | None  # hex, from the stored S3 checksum; None if it has none
    mode: str | None
    until: datetime | None
    hold: bool


@dataclass(frozen=True)
class StoreConfig:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str = ""
    region: str = "us-east-1"
    ca: Path | None = None
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    attempts: int = 5  # botocore's standard retry mode: the first try and 4 retries

    def __repr__(self) -> str:  # never the secret
        return f"StoreConfig(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    @classmethod
    def load(
        cls,
        target: str,
        endpoint: str | None,
        credentials: Path | None,
        ca: Path | None = None,
        environ: dict[str, str] | None = None,
    ) -> StoreConfig:
        """`target` is s3://BUCKET; the keys from `credentials` (a TOML file
        only its owner may read) or else the environment."""
        bucket = bucket_of(target)
        if not endpoint:
            raise StoreConfigError(msg("an s3:// store needs --endpoint URL (http:// or https://)"))
        if not re.fullmatch(r"https?://[^\s/?#]+/?", endpoint):
            raise StoreConfigError(
                msg("--endpoint %(url)r: want http://HOST[:PORT] or https://HOST[:PORT]",
                    url=endpoint)
            )  # fmt: skip
        if ca is not None and not ca.is_file():
            raise StoreConfigError(msg("--ca %(file)s: no such file", file=str(ca)))
        if ca is not None and endpoint.startswith("http://"):
            raise StoreConfigError(msg("--ca is for an https:// endpoint"))
        env = os.environ if environ is None else environ
        if credentials is not None:
            access, secret, region = read_credentials(credentials)
        elif env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            access, secret = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
            region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"
        else:
            raise StoreConfigError(
                msg("no store credentials: give --credentials FILE (TOML: access_key, "
                    "secret_key) or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
            )  # fmt: skip
        return cls(endpoint.rstrip("/"), bucket, access, secret, region, ca)


def is_bucket_target(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(SCHEME)


def add_store_arguments(p: Any, t: Texts) -> None:
    """The S3 store's options, for every command that takes `--to s3://BUCKET`."""
    p.add_argument(
        "--endpoint", metavar="URL", help=t.tr("the S3 store's URL, http:// or https:// (s3://)")
    )
    p.add_argument(
        "--credentials",
        type=Path,
        metavar="FILE",
        help=t.tr(
            "TOML with access_key and secret_key, readable by its owner only "
            "(s3://; default: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        ),
    )
    p.add_argument(
        "--ca", type=Path, metavar="FILE", help=t.tr("CA bundle for an https:// endpoint (s3://)")
    )


def agency_of(args: Any) -> Path | AgencyBucket:
    """`--to`: the agency's bucket (connected) or its folder; the store's
    options given with a folder are refused, not ignored."""
    if is_bucket_target(args.to):
        return AgencyBucket.connect(
            StoreConfig.load(args.to, args.endpoint, args.credentials, args.ca)
        )
    if args.endpoint or args.credentials or args.ca:
        raise StoreConfigError(msg("--endpoint, --credentials and --ca are for an s3:// store"))
    return Path(args.to)


def bucket_of(target: str) -> str:
    name = target.removeprefix(SCHEME).rstrip("/")
    if not target.startswith(SCHEME) or not BUCKET_RE.fullmatch(name) or ".." in name:
        raise StoreConfigError(
            msg("%(target)r: want s3://BUCKET (3-63 of a-z, 0-9, '.', '-')", target=target)
        )
    return name


def read_credentials(path: Path) -> tuple[str, str, str]:
    """(access_key, secret_key, region) from a TOML file only its owner may read."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise StoreConfigError(msg("%(file)s is not a file", file=str(path)))
        if st.st_mode & 0o077:
            raise StoreConfigError(
                msg("%(file)s can be read by others than its owner: chmod 600 it first",
                    file=str(path))
            )  # fmt: skip
        table = tomllib.loads(path.read_text())
    except OSError as exc:
        raise StoreConfigError(
            msg("%(file)s: %(error)s", file=str(path), error=exc.strerror or str(exc))
        ) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise StoreConfigError(msg("%(file)s: %(error)s", file=str(path), error=str(exc))) from None
    access, secret = table.get("access_key"), table.get("secret_key")
    region = table.get("region", "us-east-1")
    unknown = set(table) - {"access_key", "secret_key", "region"}
    if unknown:
        raise StoreConfigError(
            msg("%(file)s: unknown key %(key)r", file=str(path), key=sorted(unknown)[0])
        )
    if not (isinstance(access, str) and access and isinstance(secret, str) and secret):
        raise StoreConfigError(
            msg("%(file)s: want access_key and secret_key (strings)", file=str(path))
        )
    if not isinstance(region, str) or not region:
        raise StoreConfigError(msg("%(file)s: region must be a string", file=str(path)))
    return access, secret, region


def sha256_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _hex_of_b64(value: str | None) -> str | None:
    if not value or "-" in value:  # a multipart object's composite checksum
        return None
    try:
        return base64.b64decode(value, validate=True).hex()
    except ValueError:
        return None


class AgencyBucket:
    """One bucket of an S3 store with Object Lock."""

    def __init__(self, config: StoreConfig, client: Any) -> None:
        self.config = config
        self.bucket = config.bucket
        self.client = client
        from botocore.exceptions import BotoCoreError, ClientError

        self._client_error = ClientError
        self._core_error = BotoCoreError

    @classmethod
    def connect(cls, config: StoreConfig) -> AgencyBucket:
        import boto3
        from botocore.config import Config

        client = boto3.session.Session().client(
            "s3",
            endpoint_url=config.endpoint,
            aws_access_key_id=config.access_key,
            aws_secret_access_key=config.secret_key,
            region_name=config.region,
            verify=str(config.ca) if config.ca else True,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=config.connect_timeout_s,
                read_timeout=config.read_timeout_s,
                retries={"max_attempts": config.attempts, "mode": "standard"},
                # the checksums we send are SHA-256 ones we name; no CRC32 trailers
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        return cls(config, client)

    # -- errors -------------------------------------------------------------------

    def _call(self, what: str, fn: Any, **kw: Any) -> Any:
        """One S3 call: a refusal becomes StoreRefused, the store out of reach
        StoreUnreachable."""
        try:
            return fn(**kw)
        except self._client_error as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode", "?"))  # fmt: skip
            text = err.get("Message") or code
            raise StoreRefused(
                msg("the store refused %(what)s: %(code)s (%(text)s)", what=what, code=code,
                    text=str(text)),
                code,
            ) from None  # fmt: skip
        except self._core_error as exc:
            raise StoreUnreachable(f"{self.config.endpoint}: {exc}") from None

    # -- the bucket -------------------------------------------------------------

    def ensure_bucket(self) -> bool:
        """The bucket exists with Object Lock; True when it was made now.
        StoreConfigError (one line) for a bucket without Object Lock."""
        try:
            self._call(f"HeadBucket {self.bucket}", self.client.head_bucket, Bucket=self.bucket)
        except StoreRefused as exc:
            if exc.code not in ("404", "NoSuchBucket", "NotFound"):
                raise
            self._call(f"CreateBucket {self.bucket}", self.client.create_bucket,
                       Bucket=self.bucket, ObjectLockEnabledForBucket=True)  # fmt: skip
            self._check_lock()
            return True
        self._check_lock()
        return False

    def _check_lock(self) -> None:
        try:
            got = self._call(
                f"GetObjectLockConfiguration {self.bucket}",
                self.client.get_object_lock_configuration,
                Bucket=self.bucket,
            )
        except StoreRefused as exc:  # fmt: skip
            if "ObjectLockConfigurationNotFound" not in exc.code:
                raise
            got = {}
        enabled = got.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            raise StoreConfigError(
                msg("bucket %(bucket)s exists without Object Lock: evidence is not stored "
                    "where it could be deleted (make a bucket with Object Lock)",
                    bucket=self.bucket)
            )  # fmt: skip

    # -- objects ----------------------------------------------------------------

    def head(self, key: str, version_id: str | None = None) -> Head | None:
        """The current (or given) version of `key`; None when there is none."""
        kw: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "ChecksumMode": "ENABLED"}
        if version_id:
            kw["VersionId"] = version_id
        try:
            r = self._call(f"HeadObject {key}", self.client.head_object, **kw)
        except StoreRefused as exc:
            if exc.code in ("404", "NoSuchKey", "NotFound", "NoSuchVersion"):
                return None
            raise
        until = r.get("ObjectLockRetainUntilDate")
        return Head(
            key=key,
            version_id=r.get("VersionId"),
            size=int(r.get("ContentLength") or 0),
            sha256=_hex_of_b64(r.get("ChecksumSHA256")),
            mode=r.get("ObjectLockMode"),
            until=until.astimezone(UTC) if isinstance(until, datetime) else None,
            hold=r.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def get_bytes(self, key: str, limit: int = 64 * 1024 * 1024) -> bytes | None:
        """A small object's bytes (a chain, a key, a receipt); None when absent."""
        try:
            r = self._call(f"GetObject {key}", self.client.get_object, Bucket=self.bucket, Key=key)
        except StoreRefused as exc:
            if exc.code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        try:
            data: bytes = r["Body"].read(limit + 1)
        except self._core_error as exc:
            raise StoreUnreachable(f"{self.config.endpoint}: {exc}") from None
        finally:
            r["Body"].close()
        if len(data) > limit:
            raise StoreRefused(msg("%(key)s is larger than %(n)s bytes", key=key, n=limit), "Size")
        return data

    def read_back(self, key: str, version_id: str | None) -> str:
        """GET the version and hash its bytes here: the SHA-256 (hex)."""
        kw: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if version_id:
            kw["VersionId"] = version_id
        r = self._call(f"GetObject {key}", self.client.get_object, **kw)
        digest = hashlib.sha256()
        body = r["Body"]
        try:
            for chunk in iter(lambda: body.read(BLOCK), b""):
                digest.update(chunk)
        except self._core_error as exc:
            raise StoreUnreachable(f"{self.config.endpoint}: {exc}") from None
        finally:
            body.close()
        return digest.hexdigest()

    def put_verified(self, key: str, body: bytes | Path, sha256: str, lock: Lock) -> str | None:
        """PUT with the checksum and the lock, then read the version back and
        hash it: its version id once it matches; ReadBackMismatch otherwise
        (the version stays, locked; the caller writes no index row for it)."""
        if isinstance(body, Path):
            with body.open("rb") as f:
                r = self._put(key, f, sha256, lock)
        else:
            r = self._put(key, body, sha256, lock)
        version = r.get("VersionId")
        if self.read_back(key, version) != sha256:
            raise ReadBackMismatch(key)
        return version if isinstance(version, str) else None

    def _put(self, key: str, body: bytes | BinaryIO, sha256: str, lock: Lock) -> Any:
        kw: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": body,
            "ChecksumSHA256": sha256_b64(sha256),
            "ObjectLockMode": COMPLIANCE,
            "ObjectLockRetainUntilDate": lock.until,
        }
        if lock.hold:
            kw["ObjectLockLegalHoldStatus"] = "ON"
        return self._call(f"PutObject {key}", self.client.put_object, **kw)

    def extend(self, head: Head, lock: Lock, release: bool = False) -> bool:
        """Make the stored version at least as locked as `lock`: retention
        extended (never shortened), the hold put on; the hold taken off only
        when `release` (an authorised, registered release). True if changed."""
        changed = False
        if head.mode != COMPLIANCE or head.until is None or head.until < lock.until:
            until = lock.until if head.until is None else max(head.until, lock.until)
            self._call(f"PutObjectRetention {head.key}", self.client.put_object_retention,
                       Bucket=self.bucket, Key=head.key, VersionId=head.version_id,
                       Retention={"Mode": COMPLIANCE, "RetainUntilDate": until})  # fmt: skip
            changed = True
        if lock.hold and not head.hold:
            self.legal_hold(head.key, head.version_id, True)
            changed = True
        elif release and head.hold and not lock.hold:
            self.legal_hold(head.key, head.version_id, False)
            changed = True
        return changed

    def legal_hold(self, key: str, version_id: str | None, on: bool) -> None:
        kw: dict[str, Any] = {"Bucket": self.bucket, "Key": key,
                              "LegalHold": {"Status": "ON" if on else "OFF"}}  # fmt: skip
        if version_id:
            kw["VersionId"] = version_id
        self._call(f"PutObjectLegalHold {key}", self.client.put_object_legal_hold, **kw)

    def keys(self, prefix: str) -> Iterator[str]:
        """Every current object's key under `prefix`, in the store's order."""
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            r = self._call(f"ListObjectsV2 {prefix}", self.client.list_objects_v2, **kw)
            for obj in r.get("Contents") or []:
                yield obj["Key"]
            token = r.get("NextContinuationToken")
            if not r.get("IsTruncated") or not token:
                return

    def versions(self, prefix: str) -> list[dict[str, Any]]:
        """Every version (not delete markers) under `prefix`."""
        out: list[dict[str, Any]] = []
        kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while True:
            r = self._call(f"ListObjectVersions {prefix}", self.client.list_object_versions, **kw)
            out.extend(r.get("Versions") or [])
            if not r.get("IsTruncated"):
                return out
            kw["KeyMarker"] = r.get("NextKeyMarker")
            kw["VersionIdMarker"] = r.get("NextVersionIdMarker")

    def versions_of(self, key: str) -> list[tuple[str, bool]]:
        """Every version of exactly `key`, delete markers included:
        (version id, is a delete marker)."""
        out: list[tuple[str, bool]] = []
        kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key}
        while True:
            r = self._call(f"ListObjectVersions {key}", self.client.list_object_versions, **kw)
            for kind, marker in (("Versions", False), ("DeleteMarkers", True)):
                out.extend((str(v["VersionId"]), marker) for v in r.get(kind) or []
                           if v.get("Key") == key and v.get("VersionId"))  # fmt: skip
            if not r.get("IsTruncated"):
                return out
            kw["KeyMarker"] = r.get("NextKeyMarker")
            kw["VersionIdMarker"] = r.get("NextVersionIdMarker")

    def delete_version(self, key: str, version_id: str) -> None:
        """DELETE of one version by its id (never a delete marker on top): the
        store decides; a locked or held version is refused (StoreRefused)."""
        self._call(f"DeleteObject {key} ({version_id})", self.client.delete_object,
                   Bucket=self.bucket, Key=key, VersionId=version_id)  # fmt: skip
