"""`--run-config` / `--node-config` parsing."""

from __future__ import annotations

import math

import pytest
from stamen.common.config import parse_user_config
from stamen.common.errors import ConfigError


def test_the_documented_example() -> None:
    config = parse_user_config('num-server-rounds=3 lr=0.1 name="a b" flag=true')
    assert config == {"num-server-rounds": 3, "lr": 0.1, "name": "a b", "flag": True}
    assert [type(v) for v in config.values()] == [int, float, str, bool]


def test_node_config() -> None:
    assert parse_user_config("partition-id=0 num-partitions=10") == {
        "partition-id": 0,
        "num-partitions": 10,
    }


def test_empty_text_is_an_empty_config() -> None:
    assert parse_user_config("") == {}
    assert parse_user_config("  \n ") == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x=-7", -7),
        ("x=+7", 7),
        ("x=1_000", 1000),
        ("x=0x1f", 31),
        ("x=1e-3", 0.001),
        ("x=-0.5", -0.5),
        ("x=true", True),
        ("x=false", False),
        ("x=False", False),
        ("x=TRUE", True),
        ("x=adam", "adam"),
        ("x=path/to/data.csv", "path/to/data.csv"),
        ("x=a=b", "a=b"),
        ("x=3#4", "3#4"),
        ("x=1979-05-27", "1979-05-27"),
        ("x=[1,2]", "[1,2]"),
        ('x="007"', "007"),
        ('x="true"', "true"),
        ('x=""', ""),
        ("x='single # quoted'", "single # quoted"),
        ("x='c:\\temp'", "c:\\temp"),
        ('x="tab\\there"', "tab\there"),
        ('x="say \\"hi\\""', 'say "hi"'),
    ],
)
def test_values_are_typed_like_toml(text: str, expected: object) -> None:
    value = parse_user_config(text)["x"]
    assert value == expected
    assert type(value) is type(expected)


def test_special_floats() -> None:
    config = parse_user_config("a=inf b=-inf c=nan")
    assert config["a"] == math.inf
    assert config["b"] == -math.inf
    assert math.isnan(float(config["c"]))


def test_keys_allow_letters_digits_dot_dash_underscore() -> None:
    assert parse_user_config("a.B-c_9=1") == {"a.B-c_9": 1}


def test_pairs_may_be_separated_by_any_whitespace() -> None:
    assert parse_user_config(" a=1\n\tb='x y'  ") == {"a": 1, "b": "x y"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr", r"'lr': not key=value"),
        ("a=1 oops", r"'oops': not key=value"),
        ("=3", r"'=3': the key must be"),
        ("k!=3", r"'k!=3': the key must be"),
        ("lr=", r"'lr=' has no value"),
        ('name="a b', r"quote is unclosed"),
        ("name='a b", r"quote is unclosed"),
        ('a=b"c"', r"quote is unclosed or misplaced"),
        ('"a"=1', r"the key must be"),
        ("a=1 a=2", r"'a=2': the key 'a' is given twice"),
        ('a="\\q"', r"is not a valid string"),
    ],
)
def test_malformed_input_names_the_offending_piece(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_user_config(text)
    assert "\n" not in str(info.value)
