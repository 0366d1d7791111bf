"""``s3://`` roots: the filesystem, the probe, and the writes ``pyarrow.fs`` cannot do.

Endpoint, credentials and region come from the standard variables (``AWS_ENDPOINT_URL``
or ``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` or any source
boto3 and the AWS SDK read, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``), so a Ray worker
started from the same environment reaches the same bucket. Both clients retry a bounded
number of times with short connect timeouts: an endpoint that is down fails in seconds.

``pyarrow.fs`` has no conditional put and its output stream completes the upload when it
is closed after an exception, so small records are one boto3 ``PutObject`` of the whole
object (S3 stores it whole or not at all), and the root's lock is a ``PutObject`` with
``If-None-Match: *`` (atomic on S3: exactly one of two racing creates succeeds).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs

from ..errors import ClulError

CONNECT_TIMEOUT_S = 3
REQUEST_TIMEOUT_S = 60
MAX_ATTEMPTS = 3
DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
          "InvalidToken", "ExpiredToken", "AllAccessDisabled"}
NO_BUCKET = {"404", "NoSuchBucket"}
# The answers a conditional request expects (not failures): the object exists (a create
# with If-None-Match), it is absent, it changed since it was read (If-Match).
CONFLICT = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
ABSENT = ("NoSuchKey", "404")
CHANGED = ("PreconditionFailed", "412")


def is_s3(root: str) -> bool:
    return root.startswith("s3://")


def location(root: str) -> tuple[str, str]:
    """(bucket, key prefix without slashes at its ends) of an ``s3://`` root."""
    u = urlparse(root)
    if u.query or not u.netloc:
        raise ClulError(f"cannot open storage root {root}: write it s3://BUCKET/PREFIX "
                        "(endpoint and region come from AWS_ENDPOINT_URL and AWS_REGION)")
    return u.netloc, u.path.strip("/")


def endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of an ``s3://`` root (bounded retries) and its base path."""
    bucket, prefix = location(root)
    kw: dict = {}
    if ep := endpoint():
        u = urlparse(ep)
        kw = {"endpoint_override": u.netloc or u.path, "scheme": u.scheme or "https"}
    fs = pafs.S3FileSystem(region=region(), connect_timeout=CONNECT_TIMEOUT_S,
                           request_timeout=REQUEST_TIMEOUT_S,
                           retry_strategy=pafs.AwsStandardS3RetryStrategy(MAX_ATTEMPTS), **kw)
    return fs, "/".join(p for p in (bucket, prefix) if p)


@lru_cache(maxsize=4)
def _client(ep: str | None, reg: str, key_id: str | None):
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=ep, region_name=reg,
        config=Config(connect_timeout=CONNECT_TIMEOUT_S, read_timeout=REQUEST_TIMEOUT_S,
                      retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"}))


def client():
    """A boto3 S3 client for the current environment (one per endpoint, region and key)."""
    return _client(endpoint(), region(), os.environ.get("AWS_ACCESS_KEY_ID"))


def _code(e: Exception) -> str:
    return str((getattr(e, "response", None) or {}).get("Error", {}).get("Code", ""))


def _os_error(e: Exception, what: str) -> OSError:
    code = _code(e)
    return OSError(f"{what}: {code or type(e).__name__}")


def probe(root: str) -> None:
    """Refuse in one line a root whose bucket is missing, whose credentials are refused or
    whose endpoint cannot be reached; run before anything starts or is written."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket, _ = location(root)
    try:
        client().head_bucket(Bucket=bucket)
    except NoCredentialsError:
        raise ClulError(f"{root}: no S3 credentials (set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, or a profile)") from None
    except ClientError as e:
        code = _code(e)
        if code in NO_BUCKET:
            raise ClulError(f"{root}: bucket {bucket} does not exist") from None
        if code in DENIED:
            raise ClulError(f"{root}: the S3 endpoint refused the credentials "
                            f"({code}; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)") from None
        raise ClulError(f"{root}: S3 error {code}") from None
    except BotoCoreError as e:  # connection refused, timeout, bad endpoint URL
        raise ClulError(f"{root}: cannot reach the S3 endpoint "
                        f"{endpoint() or 'of AWS'} ({type(e).__name__})") from None


def _request(op: str, bucket: str, key: str, expected: tuple[str, ...] = (),
             then: Callable[[Any], Any] = lambda r: r, **params: Any) -> tuple[bool, Any]:
    """``client().<op>(Bucket=bucket, Key=key, **params)``, its response passed to ``then``:
    ``(True, what then returns)``, or ``(False, None)`` when S3 answers one of the
    ``expected`` error codes; any other failure is an OSError naming the request."""
    from botocore.exceptions import BotoCoreError, ClientError

    what = f"{''.join(w.title() for w in op.split('_'))} s3://{bucket}/{key}"
    try:
        return True, then(getattr(client(), op)(Bucket=bucket, Key=key, **params))
    except ClientError as e:
        if _code(e) in expected:
            return False, None
        raise _os_error(e, what) from None
    except BotoCoreError as e:
        raise _os_error(e, what) from None


def put(bucket: str, key: str, data: bytes) -> None:
    """One ``PutObject`` of the whole object: the old version until it succeeds."""
    _request("put_object", bucket, key, Body=data)


def create(bucket: str, key: str, data: bytes) -> bool:
    """Create the object only if absent (``If-None-Match: *``); False when it exists."""
    return _request("put_object", bucket, key, CONFLICT, Body=data, IfNoneMatch="*")[0]


def get(bucket: str, key: str) -> tuple[bytes, str] | None:
    """(content, ETag) of an object, None when absent."""
    return _request("get_object", bucket, key, ABSENT,
                    then=lambda r: (r["Body"].read(), r["ETag"]))[1]


def delete_if(bucket: str, key: str, etag: str) -> bool:
    """Delete the object only while its ETag is ``etag`` (``If-Match``); False otherwise."""
    return _request("delete_object", bucket, key, CHANGED + ABSENT, IfMatch=etag)[0]
