"""`s3://bucket/prefix` as a model's weights source: parsed with urllib.parse, the bucket checked
against the S3 general purpose bucket naming rules, the prefix kept to characters that need no
escaping in a key, an IAM policy resource or a shell-free env value."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

# General purpose bucket names: 3-63 characters, lowercase letters, digits, '.', '-', starting and ending
# with a letter or digit. Dots are refused here although S3 allows them: a dotted name breaks TLS
# certificate matching in virtual-hosted-style requests (bucket.s3.<region>.amazonaws.com).
BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", "--x-s3", "--table-s3")
# Key prefix: segments of letters, digits, '.', '_', '-', not starting with '.' (so no '.' or '..').
PREFIX = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,127})*")
PREFIX_MAX = 512  # keys are at most 1024 bytes; the rest is <hfId>/<revision>/<file>


@dataclass(frozen=True)
class S3Source:
    bucket: str
    prefix: str  # without leading or trailing '/'; may be empty

    def model_prefix(self, hf_id: str, revision: str) -> str:
        """Where one pinned revision lives: <prefix>/<hfId>/<revision> (no trailing '/')."""
        return "/".join(p for p in (self.prefix, hf_id, revision) if p)

    def model_uri(self, hf_id: str, revision: str) -> str:
        return f"s3://{self.bucket}/{self.model_prefix(hf_id, revision)}"


def bucket_problem(bucket: str) -> str | None:
    if not BUCKET.fullmatch(bucket):
        return (
            f"bucket {bucket!r} is not an S3 bucket name — use 3-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (no dots: they break TLS to the bucket)"
        )
    if bucket.startswith(RESERVED_PREFIXES) or bucket.endswith(RESERVED_SUFFIXES):
        return f"bucket {bucket!r} uses a prefix or suffix S3 reserves — choose another name"
    try:
        ipaddress.ip_address(bucket)
    except ValueError:
        return None
    return f"bucket {bucket!r} is formatted as an IP address, which S3 refuses — choose another name"


def parse(v: str) -> tuple[S3Source | None, str | None]:
    """(source, None) for a valid s3://bucket[/prefix], else (None, why and how to fix it)."""
    if not v.isascii() or not v.isprintable() or any(c.isspace() for c in v):
        return None, f"{v!r} has spaces, control or non-ASCII characters — write s3://<bucket>/<prefix>"
    parts = urllib.parse.urlsplit(v)
    if parts.scheme != "s3" or not parts.netloc:
        return None, f"{v!r} is not an s3:// URL — write s3://<bucket>/<prefix>"
    if parts.query or parts.fragment or "#" in v or "?" in v or "@" in parts.netloc or ":" in parts.netloc:
        return None, f"{v!r} carries a query, fragment, credentials or port — write s3://<bucket>/<prefix>"
    problem = bucket_problem(parts.netloc)
    if problem:
        return None, problem
    prefix = parts.path.removeprefix("/").removesuffix("/")
    if prefix and (not PREFIX.fullmatch(prefix) or len(prefix) > PREFIX_MAX):
        return None, (
            f"prefix {prefix!r} is not a plain key prefix — use letters, digits, '.', '_', '-' between single "
            f"slashes (no segment starting with '.', at most {PREFIX_MAX} characters)"
        )
    return S3Source(parts.netloc, prefix), None
