"""Pure helpers of borealis.secrets: search words and random passwords."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from borealis.aws import AWSError
from borealis.secrets import random_password
from borealis.secrets._search import words


def test_words_follow_the_user_guide_example() -> None:
    assert words("credsDatabase#892") == ["creds", "database", "892"]
    assert words("My_Secret") == ["my", "secret"]
    assert words("HTTPServer v2") == ["http", "server", "v", "2"]


def test_random_password_defaults() -> None:
    password = random_password()
    assert len(password) == 32
    for chars in (string.ascii_lowercase, string.ascii_uppercase, string.digits, string.punctuation):
        assert any(c in chars for c in password)
    assert " " not in password


@given(
    length=st.integers(min_value=4, max_value=64),
    exclude=st.text(alphabet=string.printable, max_size=20),
    no_punct=st.booleans(),
)
def test_random_password_respects_exclusions(length: int, exclude: str, no_punct: bool) -> None:
    try:
        password = random_password(password_length=length, exclude_characters=exclude, exclude_punctuation=no_punct)
    except AWSError as e:
        assert e.code == "InvalidParameterException"
        return
    assert len(password) == length
    assert not set(password) & set(exclude)
    if no_punct:
        assert not set(password) & set(string.punctuation)


def test_random_password_errors() -> None:
    for kwargs in (
        {"password_length": 0},
        {"password_length": 4097},
        {
            "exclude_lowercase": True,
            "exclude_uppercase": True,
            "exclude_numbers": True,
            "exclude_punctuation": True,
        },
        {"password_length": 2},
    ):
        with pytest.raises(AWSError) as info:
            random_password(**kwargs)
        assert info.value.code == "InvalidParameterException"
