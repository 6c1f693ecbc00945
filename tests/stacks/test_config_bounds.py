"""Bounds on values: public address space counted by hand, cron field ranges, the closed zone list,
URLs, int32 counts and booleans that are not numbers."""

import pytest

from stacks import config
from stacks.config import schema


@pytest.mark.parametrize(
    "cidrs,expected",
    [
        # 2^31 + 2^30 + 2^29 = 3,758,096,384 minus the non-public blocks inside (all but 224.0.0.0/3
        # are inside; 224/3 = 2^29 is not inside 0/1+128/2+192/3 = 0.0.0.0-223.255.255.255):
        # 0/8 + 10/8 + 127/8 = 3 x 2^24, 100.64/10 = 2^22, 169.254/16 + 192.168/16 = 2 x 2^16,
        # 172.16/12 = 2^20, 192.0.0/24 + 192.0.2/24 + 198.51.100/24 + 203.0.113/24 = 4 x 256, 198.18/15 = 2^17
        (
            ["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3"],
            3_758_096_384 - 3 * 2**24 - 2**22 - 2 * 2**16 - 2**20 - 4 * 256 - 2**17,
        ),
        (["17.0.0.0/8"], 2**24),
        (["17.0.0.0/8", "17.1.0.0/16"], 2**24),  # overlap counted once
        (["10.0.0.0/8", "192.168.0.0/16", "203.0.113.0/24"], 0),
        (["198.51.100.7/32", "8.8.8.8/32"], 1),
    ],
)
def test_public_addresses_by_hand(cidrs, expected):
    assert schema.public_addresses(cidrs) == expected


def test_too_open_threshold_is_one_slash_eight():
    assert not schema.too_open(["17.0.0.0/8"])
    assert schema.too_open(["17.0.0.0/8", "8.8.8.8/32"])
    assert schema.too_open(["0.0.0.0/0"]) and schema.too_open(["0.0.0.0/1", "128.0.0.0/1"])


@pytest.mark.parametrize(
    "expr,ok",
    [
        ("0 8 * * 1-5", True),
        ("*/15 8-17 1,15 1-12/3 0,6", True),
        ("59 23 31 12 6", True),
        ("99 99 * * *", False),
        ("61 25 * * 8", False),
        ("*/0 * * * *", False),
        ("0 0 0 * *", False),  # day of month starts at 1
        ("0 0 * 13 *", False),
        ("0 0 * * 7", False),  # KEDA (robfig/cron) reads day of week 0-6
        ("0 8 * * *\n", False),
        ("0 8 * *", False),
        ("0 8 * * * *", False),
        ("0 8 * * MON", False),
    ],
)
def test_cron_field_ranges(expr, ok):
    assert (schema.cron_problem(expr) is None) is ok, schema.cron_problem(expr)


def test_zones_come_from_the_tzdata_package():
    assert {"Europe/Berlin", "America/New_York", "UTC", "Etc/UTC"} <= schema.IANA_ZONES
    # files of a host's zoneinfo directory that are not zones
    assert not {"localtime", "posixrules", "zone.tab", "tzdata.zi", "", "Europe/"} & schema.IANA_ZONES
    assert len(schema.IANA_ZONES) > 400


@pytest.mark.parametrize(
    "url,ok",
    [
        ("http://prometheus.monitoring.svc:9090", True),
        ("https://prom.example.com/api/v1", True),
        ("http://10.0.0.1:9090", True),
        ("http://p:65535", True),
        ("http://p:65536", False),
        ("http://p:0", False),
        ("http://169.254.169.254/", False),
        ("http://[::ffff:169.254.169.254]/", False),
        ("http://[fd00:ec2::254]/", False),
        ("http://metadata.google.internal/", False),
        ("http://0.0.0.0:9090", False),
        ("http://2852039166/", False),
        ("http://p:9090/\n", False),
        ("http://p:9090?x=1", False),
        ("gopher://p", False),
    ],
)
def test_url_checks(url, ok):
    assert (schema.url_problem(url) is None) is ok, schema.url_problem(url)


def _replicas(v):
    return {"models": {"tiny": {"preset": "qwen3-0.6b"}}, "gateway": {"replicas": v}}


def test_int32_edge():
    """2^31 - 1 passes the schema bound (whatever the resolver says of it), 2^31 does not."""
    config.StackConfig.model_validate(_replicas(2**31 - 1))
    with pytest.raises(Exception, match="int32"):
        config.StackConfig.model_validate(_replicas(2**31))


@pytest.mark.parametrize("v", [True, False])
def test_booleans_are_not_counts(v):
    with pytest.raises(Exception, match="is a boolean, not a number"):
        config.StackConfig.model_validate(_replicas(v))
    config.StackConfig.model_validate(_replicas(3))  # negative control


def test_booleans_stay_booleans_where_booleans_belong():
    cfg = config.StackConfig.model_validate({"ui": {"enabled": True}, "gateway": {"internalLoadBalancer": False}})
    assert cfg.ui.enabled is True and cfg.gateway.internalLoadBalancer is False
