"""S3-compatible remotes (AWS S3, MinIO, R2, Ceph …): the only module that imports boto3.

* One boto3 client per process and endpoint, shared by every thread, with a connection
  pool sized to the transfer's ``-j`` (created again after a fork: clients are not
  fork-safe, RELIABILITY.md §35).
* botocore's ``standard`` retry mode retries throttling, 5xx and dropped connections
  with backoff; what still fails is mapped to one clear :class:`RemotePermanent` or
  :class:`RemoteTransient` line (no such bucket, access denied, wrong region, endpoint
  down, no credentials).
* Writes are one PUT or one completed multipart upload, so a key never holds partial
  bytes; the bytes are hashed on the client before the PUT / the completion, so a key
  never holds bytes that do not hash to it even where the server checks nothing.
  ``If-None-Match: *`` makes the write conditional where a probe shows that the
  endpoint honours it; otherwise large objects fall back to HEAD-then-PUT (safe:
  keys are content-addressed).
* ``x-amz-checksum-sha256`` is sent with each PUT and part (the fragment's own hash is
  free) unless the remote's ``checksum = "off"`` option says the endpoint rejects it.
* Memory is bounded by a byte budget over in-flight buffers, whatever the file sizes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
import botocore.config
import botocore.exceptions

from gitquilt.digest import expect_digest, hash_stream
from gitquilt.errors import ConfigError, IntegrityError, QuiltError, RemoteError, RemotePermanent, RemoteTransient
from gitquilt.remotes import (
    Capabilities,
    ObjectInfo,
    ObjectMissing,
    PendingUpload,
    RequestCounter,
    check_key,
    parse_size,
)
from gitquilt.remotes.streams import ByteBudget, check_bytes, read_exactly

if TYPE_CHECKING:
    from gitquilt.config import RemoteConfig

MiB = 1 << 20
#: Multipart above this: over a WAN (AWS) parts in parallel beat one stream; on a LAN endpoint
#: one streamed PUT is faster (fewer requests, no server-side assembly), so only huge objects.
DEFAULT_THRESHOLD = 64 * MiB
DEFAULT_THRESHOLD_ENDPOINT = 1 << 30
#: Objects up to this size are read into memory (under the byte budget), hashed and PUT.
SMALL_PUT = 8 * MiB
DEFAULT_CHUNK = 16 * MiB
DEFAULT_MEMORY = 128 * MiB
DEFAULT_ATTEMPTS = 4
MIN_CHUNK = 5 * MiB  # S3's smallest part (but the last)
MAX_PARTS = 10_000
CHECKSUM_MODES = ("sha256", "off")
CHECKSUM_HINT = (
    'set checksum = "off" for this remote in .gitquilt.toml (or: git quilt remote add NAME URL --checksum off); '
    "data stays verified, because gitquilt re-hashes every byte it reads"
)

_CLIENTS: dict[tuple[Any, ...], tuple[Any, RequestCounter]] = {}
_CLIENTS_LOCK = threading.Lock()
_PROBED: dict[tuple[Any, ...], Capabilities] = {}
_PROBE_LOCK = threading.Lock()


def shared_client(endpoint: str | None, region: str | None, pool: int, attempts: int) -> tuple[Any, RequestCounter]:
    """The process's client for this endpoint (and its HTTP request counter)."""
    key = (os.getpid(), endpoint, region, pool, attempts)
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(key)
        if found is not None:
            return found
        config = botocore.config.Config(
            max_pool_connections=pool,
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=10,
            read_timeout=60,
            tcp_keepalive=True,
            # we send x-amz-checksum-sha256 ourselves and re-hash every download
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path" if endpoint else "auto"},
            user_agent_extra="gitquilt",
        )
        try:
            client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region, config=config)
        except ValueError as exc:  # botocore: "Invalid endpoint"
            raise ConfigError(f"invalid S3 endpoint {endpoint!r}: {exc}") from None
        counter = RequestCounter()
        client.meta.events.register("before-send.s3", lambda **kw: counter.add("http"))
        _CLIENTS[key] = (client, counter)
        return client, counter


def _b64(hexdigest: str) -> str:
    return base64.b64encode(bytes.fromhex(hexdigest)).decode("ascii")


def _checksum_rejected(code: str, message: str) -> bool:
    text = f"{code} {message}".lower()
    return code in ("InvalidArgument", "NotImplemented", "InvalidRequest", "BadRequest", "400") and (
        "checksum" in text or "x-amz-sdk" in text or "trailer" in text
    )


class S3Remote:
    """A :class:`~gitquilt.remotes.Remote` on an S3 bucket and key prefix."""

    def __init__(self, bucket: str, prefix: str, cfg: RemoteConfig, jobs: int = 32) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint = cfg.endpoint_url
        self.region = cfg.region
        self.url = f"s3://{bucket}/{prefix}" + (f" at {self.endpoint}" if self.endpoint else "")
        opts = cfg.options
        self.checksum = str(opts.get("checksum", "sha256"))
        if self.checksum not in CHECKSUM_MODES:
            raise ConfigError(f"remote {cfg.name!r}: checksum must be one of {', '.join(CHECKSUM_MODES)}")
        default_threshold = DEFAULT_THRESHOLD if self.endpoint is None else DEFAULT_THRESHOLD_ENDPOINT
        self.threshold = parse_size(opts.get("multipart_threshold", default_threshold), "multipart_threshold")
        self.chunk = max(MIN_CHUNK, parse_size(opts.get("multipart_chunksize", DEFAULT_CHUNK), "multipart_chunksize"))
        self.budget = ByteBudget(parse_size(opts.get("memory", DEFAULT_MEMORY), "memory"))
        attempts = opts.get("max_attempts", DEFAULT_ATTEMPTS)
        if not isinstance(attempts, int) or not 1 <= attempts <= 20:
            raise ConfigError(f"remote {cfg.name!r}: max_attempts must be an integer from 1 to 20")
        ranges = opts.get("parallel_ranges", self.endpoint is None)
        if not isinstance(ranges, bool):
            raise ConfigError(f"remote {cfg.name!r}: parallel_ranges must be true or false")
        #: Split large downloads into parallel ranged GETs: worth it over a WAN (AWS), where one
        #: connection is slow; on a LAN endpoint one GET per object is faster (servers such as
        #: moto read the whole object for every range).
        self.parallel_ranges = ranges
        self.jobs = max(1, jobs)
        self._client, self._http = shared_client(self.endpoint, self.region, self.jobs * 2 + 8, attempts)
        self._caps: Capabilities | None = None
        self._parts: ThreadPoolExecutor | None = None
        self._parts_lock = threading.Lock()
        self.requests = RequestCounter()  # logical operations, by name

    def _k(self, key: str) -> str:
        return self.prefix + check_key(key)

    # -- errors -----------------------------------------------------------------------
    def _translate(self, exc: BaseException, op: str, key: str = "") -> QuiltError:
        """One clear line for a botocore failure (never credentials or signatures)."""
        where = self.url
        what = f"{op} {key}".strip()
        E = botocore.exceptions
        if isinstance(exc, E.ClientError):
            err = exc.response.get("Error", {}) or {}
            code = str(err.get("Code", ""))
            message = str(err.get("Message", ""))[:200]
            meta = exc.response.get("ResponseMetadata", {}) or {}
            status = int(meta.get("HTTPStatusCode", 0) or 0)
            headers = meta.get("HTTPHeaders", {}) or {}
            if code == "NoSuchBucket" or (status == 404 and op in ("list", "bucket")):
                return RemotePermanent(f"{where}: bucket {self.bucket!r} does not exist")
            if code in ("NoSuchKey", "404") or status == 404:
                return ObjectMissing(f"{key} is not on {where}")
            bucket_region = headers.get("x-amz-bucket-region")
            if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
                        "301") or status == 301 or (
                status == 400 and bucket_region and bucket_region != (self.region or "us-east-1")
            ):
                region = err.get("Region") or bucket_region
                hint = f" ({region})" if region else ""
                return RemotePermanent(
                    f"{where}: the bucket is in another region{hint} than the one configured "
                    f"({self.region or 'default'}); set it with: git quilt remote add NAME URL --region REGION"
                )
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                        "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem",
                        "403") or status == 403:
                return RemotePermanent(
                    f"{where}: access denied ({code or status}) for {what}; check the credentials boto3 finds "
                    "(AWS_PROFILE, AWS_ACCESS_KEY_ID, instance role)"
                )
            if _checksum_rejected(code, message):
                return RemotePermanent(f"{where}: the endpoint rejects SDK checksum headers ({code}); {CHECKSUM_HINT}")
            if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "XAmzContentChecksumMismatch"):
                return IntegrityError(f"{where}: {what}: the server says the bytes do not match their SHA-256 ({code})")
            if code in ("SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                        "ServiceUnavailable", "ConditionalRequestConflict", "OperationAborted") or status >= 500 \
                    or status in (409, 429):
                return RemoteTransient(f"{where}: {what}: {code or status} (retries exhausted)")
            return RemotePermanent(f"{where}: {what}: {code or status}: {message}".rstrip(": "))
        if isinstance(exc, (E.NoCredentialsError, E.PartialCredentialsError, E.CredentialRetrievalError)):
            return RemotePermanent(
                f"{where}: no usable AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, or use an instance role"
            )
        if isinstance(exc, E.NoRegionError):
            return RemotePermanent(f"{where}: no region configured; git quilt remote add NAME URL --region REGION")
        if isinstance(exc, (E.EndpointConnectionError, E.ConnectTimeoutError)):
            return RemoteTransient(f"{where}: cannot connect to {self.endpoint or 'S3'} ({type(exc).__name__})")
        if isinstance(exc, (E.ReadTimeoutError, E.ConnectionClosedError, E.ResponseStreamingError,
                            E.IncompleteReadError, E.HTTPClientError, ConnectionError, TimeoutError)):
            return RemoteTransient(f"{where}: {what}: connection lost ({type(exc).__name__})")
        if isinstance(exc, E.ParamValidationError):
            return RemoteError(f"{where}: {what}: invalid request: {exc}")
        if isinstance(exc, QuiltError):
            return exc
        return RemoteError(f"{where}: {what}: {type(exc).__name__}: {exc}")

    def _conditional(self, op: str, key: str, fn: Any, **params: Any) -> bool:
        """A write that may be refused with 412 because the key exists: False then."""
        self.requests.add(op)
        try:
            fn(Bucket=self.bucket, **params)
        except botocore.exceptions.ClientError as exc:
            status = (exc.response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode")
            if status == 412 or (exc.response.get("Error", {}) or {}).get("Code") == "PreconditionFailed":
                return False
            raise self._translate(exc, op, key) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._translate(exc, op, key) from None
        return True

    def _call(self, op: str, key: str, fn: Any, **params: Any) -> Any:
        self.requests.add(op)
        try:
            return fn(Bucket=self.bucket, **params)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._translate(exc, op, key) from None

    # -- capabilities -------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        """What is known without writing: the probe's answer once a write has run it."""
        if self._caps is not None:
            return self._caps
        return Capabilities(conditional_put=False, server_checksum=False, parallel_ranges=self.parallel_ranges,
                            multipart=True)

    def probe(self) -> Capabilities:
        """Probe the endpoint once per process (a few requests, only before the first write)."""
        if self._caps is None:
            ident = (os.getpid(), self.endpoint, self.region, self.bucket, self.prefix, self.checksum)
            with _PROBE_LOCK:
                caps = _PROBED.get(ident)
                if caps is None:
                    caps = _PROBED[ident] = self._run_probe()
            self._caps = caps
        return self._caps

    def _run_probe(self) -> Capabilities:
        """Find out what the endpoint honours: conditional writes and upload checksums."""
        key = self._k(f"gitquilt-probe/{uuid.uuid4().hex}")
        body = b"gitquilt capability probe\n"
        good = hashlib.sha256(body).hexdigest()
        extra: dict[str, Any] = {"ChecksumSHA256": _b64(good)} if self.checksum == "sha256" else {}
        conditional = True
        try:
            self._probe_put(key, body, IfNoneMatch="*", **extra)
        except _Rejected as rej:
            if rej.status not in (400, 501) or _checksum_rejected(rej.code, rej.message):
                raise rej.error from None
            conditional = False  # If-None-Match itself refused (NotImplemented): plain PUTs only
            self._probe_put(key, body, **extra)
        if conditional:
            try:
                self._probe_put(key, body, IfNoneMatch="*", **extra)
                conditional = False  # the header was ignored: the object was overwritten
            except _Rejected as rej:
                conditional = rej.status == 412
        server_checksum = False
        if self.checksum == "sha256":
            bad_key = key + "-checksum"
            try:
                self._probe_put(bad_key, body, ChecksumSHA256=_b64(hashlib.sha256(b"wrong").hexdigest()))
            except _Rejected as rej:
                server_checksum = rej.status == 400
            with contextlib.suppress(QuiltError):
                self._call("delete", bad_key, self._client.delete_object, Key=bad_key)
        with contextlib.suppress(QuiltError):
            self._call("delete", key, self._client.delete_object, Key=key)
        return Capabilities(conditional_put=conditional, server_checksum=server_checksum,
                            parallel_ranges=self.parallel_ranges, multipart=True)

    def _probe_put(self, key: str, body: bytes, **params: Any) -> None:
        self.requests.add("probe")
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=body, **params)
        except botocore.exceptions.ClientError as exc:
            err = exc.response.get("Error", {}) or {}
            status = int((exc.response.get("ResponseMetadata", {}) or {}).get("HTTPStatusCode", 0) or 0)
            code, message = str(err.get("Code", "")), str(err.get("Message", ""))
            if status in (400, 412, 501) and code not in ("AccessDenied",):
                raise _Rejected(status, code, message, self._translate(exc, "probe", key)) from None
            raise self._translate(exc, "probe", key) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._translate(exc, "probe", key) from None

    # -- reading --------------------------------------------------------------------------
    def list(self, prefix: str, start_after: str | None = None) -> Iterator[ObjectInfo]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix + prefix}
        if start_after is not None:
            params["StartAfter"] = self.prefix + start_after
        n = len(self.prefix)
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(**params):
                self.requests.add("list")
                for obj in page.get("Contents", ()):
                    key = obj["Key"]
                    if key.startswith(self.prefix):
                        yield ObjectInfo(key[n:], int(obj["Size"]), obj["LastModified"].timestamp())
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._translate(exc, "list", prefix) from None

    def get(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        params: dict[str, Any] = {"Key": self._k(key)}
        if length == 0:
            return io.BytesIO(b"")
        if start or length is not None:
            params["Range"] = f"bytes={start}-" + ("" if length is None else str(start + length - 1))
        resp = self._call("get", key, self._client.get_object, **params)
        return _Body(resp["Body"], self, key)  # type: ignore[return-value]

    def size(self, key: str) -> int | None:
        try:
            resp = self._call("head", key, self._client.head_object, Key=self._k(key))
        except ObjectMissing:
            return None
        return int(resp["ContentLength"])

    # -- writing --------------------------------------------------------------------------
    def put(self, key: str, source: BinaryIO, size: int, sha256: str | None = None, overwrite: bool = False) -> bool:
        if size >= self.threshold and size > 0:
            return self._put_multipart(key, source, size, sha256, overwrite)
        if size > min(SMALL_PUT, self.threshold) and _seekable(source):
            return self._put_stream(key, source, size, sha256, overwrite)
        taken = self.budget.acquire(size)
        try:
            data = read_exactly(source, size, f"upload of {key}")
            check_bytes(data, sha256, f"upload of {key}")
            return self.put_bytes(key, data, sha256, overwrite)
        finally:
            self.budget.release(taken)

    def put_bytes(self, key: str, data: bytes, sha256: str | None = None, overwrite: bool = False,
                  checksum_b64: str | None = None) -> bool:
        """One PUT of ``data`` (already verified by the caller); False if the key existed.

        ``checksum_b64`` overrides the checksum header (tests send a wrong one on purpose).
        """
        caps = self.probe()
        params: dict[str, Any] = {"Key": self._k(key), "Body": data}
        if not overwrite and caps.conditional_put:
            params["IfNoneMatch"] = "*"
        if self.checksum == "sha256" or checksum_b64 is not None:
            params["ChecksumSHA256"] = checksum_b64 or _b64(sha256 or hashlib.sha256(data).hexdigest())
        return self._conditional("put", key, self._client.put_object, **params)

    def _put_stream(self, key: str, source: BinaryIO, size: int, sha256: str | None, overwrite: bool) -> bool:
        """One PUT streamed from a seekable source: memory stays small whatever the size.

        Where the server does not check ``x-amz-checksum-sha256`` itself, the bytes are
        hashed first (one more read, from the page cache), so that a damaged cache file
        never reaches the remote under its name.
        """
        caps = self.probe()
        if not overwrite and not caps.conditional_put and self.size(key) is not None:
            return False  # HEAD-then-PUT where the endpoint ignores If-None-Match
        start = source.tell()
        what = f"upload of {key}"
        if sha256 is None or not (caps.server_checksum and self.checksum == "sha256"):
            actual, n = hash_stream(source, size + 1)
            if n != size:
                raise IntegrityError(f"{what}: expected {size} bytes, got {n if n < size else 'more'}")
            if sha256 is not None:
                expect_digest(actual, sha256, n, what)
            sha256 = actual
            source.seek(start)
        params: dict[str, Any] = {"Key": self._k(key), "Body": _Window(source, start, size), "ContentLength": size}
        if not overwrite and caps.conditional_put:
            params["IfNoneMatch"] = "*"
        if self.checksum == "sha256":
            params["ChecksumSHA256"] = _b64(sha256)
        return self._conditional("put", key, self._client.put_object, **params)

    def _pool(self) -> ThreadPoolExecutor:
        with self._parts_lock:
            if self._parts is None:
                self._parts = ThreadPoolExecutor(self.jobs, thread_name_prefix="gitquilt-part")
            return self._parts

    def _put_multipart(self, key: str, source: BinaryIO, size: int, sha256: str | None, overwrite: bool) -> bool:
        caps = self.probe()
        if not overwrite and not caps.conditional_put and self.size(key) is not None:
            return False  # HEAD-then-PUT where the endpoint ignores If-None-Match
        chunk = max(self.chunk, -(-size // MAX_PARTS))
        create: dict[str, Any] = {"Key": self._k(key)}
        if self.checksum == "sha256":
            create["ChecksumAlgorithm"] = "SHA256"
        upload_id = self._call("create_upload", key, self._client.create_multipart_upload, **create)["UploadId"]
        futures: list[Future[dict[str, Any]]] = []
        whole = hashlib.sha256()
        try:
            offset = 0
            number = 0
            while offset < size:
                n = min(chunk, size - offset)
                taken = self.budget.acquire(n)
                try:
                    data = read_exactly(source, n, f"upload of {key}")
                except BaseException:
                    self.budget.release(taken)
                    raise
                whole.update(data)
                number += 1
                futures.append(self._pool().submit(self._upload_part, key, upload_id, number, data, taken))
                offset += n
                for f in futures:  # fail fast on a part that already failed
                    if f.done() and f.exception() is not None:
                        raise f.exception()  # type: ignore[misc]
            parts = [f.result() for f in futures]
            if sha256 is not None and whole.hexdigest() != sha256:
                raise IntegrityError(
                    f"upload of {key}: expected sha256 {sha256}, got {whole.hexdigest()} after {size} bytes"
                )
            complete: dict[str, Any] = {"Key": self._k(key), "UploadId": upload_id, "MultipartUpload": {"Parts": parts}}
            if not overwrite and caps.conditional_put:
                complete["IfNoneMatch"] = "*"
            if not self._conditional("complete_upload", key, self._client.complete_multipart_upload, **complete):
                self._abort(key, upload_id)
                return False
            return True
        except BaseException:
            for f in futures:
                f.cancel()
            for f in futures:
                with contextlib.suppress(BaseException):
                    f.result()
            self._abort(key, upload_id)
            raise

    def _upload_part(self, key: str, upload_id: str, number: int, data: bytes, taken: int) -> dict[str, Any]:
        try:
            params: dict[str, Any] = {"Key": self._k(key), "UploadId": upload_id, "PartNumber": number, "Body": data}
            part: dict[str, Any] = {"PartNumber": number}
            if self.checksum == "sha256":
                params["ChecksumSHA256"] = part["ChecksumSHA256"] = _b64(hashlib.sha256(data).hexdigest())
            resp = self._call("put_part", key, self._client.upload_part, **params)
            part["ETag"] = resp["ETag"]
            return part
        finally:
            del data
            self.budget.release(taken)

    def _abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(QuiltError):
            self._call("abort_upload", key, self._client.abort_multipart_upload, Key=self._k(key), UploadId=upload_id)

    def delete(self, key: str) -> None:
        self._call("delete", key, self._client.delete_object, Key=self._k(key))

    def flush(self) -> None:
        pass  # a completed PUT is durable and visible

    def list_uploads(self) -> list[PendingUpload]:
        out: list[PendingUpload] = []
        n = len(self.prefix)
        try:
            for page in self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            ):
                self.requests.add("list_uploads")
                for u in page.get("Uploads", ()):
                    started = u.get("Initiated")
                    out.append(PendingUpload(u["Key"][n:], u["UploadId"], started.timestamp() if started else None))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._translate(exc, "list", "multipart uploads") from None
        return out

    def abort_upload(self, upload: PendingUpload) -> None:
        self._abort(upload.key, upload.upload_id)

    def request_count(self) -> int:
        return self._http.total()

    def close(self) -> None:
        with self._parts_lock:
            pool, self._parts = self._parts, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _seekable(source: BinaryIO) -> bool:
    try:
        return bool(source.seekable())
    except (AttributeError, ValueError, OSError):
        return False


class _Window(io.RawIOBase):
    """``size`` bytes of a seekable stream from ``start``, as a stream of its own (botocore seeks
    it back to 0 to sign the payload and to retry)."""

    def __init__(self, raw: BinaryIO, start: int, size: int) -> None:
        self._raw = raw
        self._start = start
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + offset))
        self._raw.seek(self._start + self._pos)
        return self._pos

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        left = self._size - self._pos
        n = left if n is None or n < 0 else min(n, left)
        if n <= 0:
            return b""
        data = self._raw.read(n)
        self._pos += len(data)
        return data

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        memoryview(b)[: len(data)] = data
        return len(data)

    def __len__(self) -> int:
        return self._size


class _Rejected(Exception):
    def __init__(self, status: int, code: str, message: str, error: QuiltError) -> None:
        super().__init__(code)
        self.status, self.code, self.message, self.error = status, code, message, error


class _Body(io.RawIOBase):
    """A GET body whose read errors (dropped connection, short body) become RemoteTransient."""

    def __init__(self, body: Any, remote: S3Remote, key: str) -> None:
        self._body = body
        self._remote = remote
        self._key = key

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        try:
            return self._body.read(None if size is None or size < 0 else size)  # type: ignore[no-any-return]
        except (botocore.exceptions.BotoCoreError, ConnectionError, TimeoutError, OSError) as exc:
            raise self._remote._translate(exc, "get", self._key) from None
        except Exception as exc:  # urllib3's own errors (ProtocolError …) derive from Exception
            if type(exc).__module__.startswith("urllib3"):
                raise RemoteTransient(f"{self._remote.url}: get {self._key}: connection lost ({type(exc).__name__})")
            raise

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(b))
        memoryview(b)[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()
