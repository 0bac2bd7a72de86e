"""The HTTP scorer never puts its URL's secrets (a password, an API key in the query) in a
message, an error or its repr: those reach the evaluator's logs."""

from __future__ import annotations

import socket

import pytest

from core.errors import ConfigError
from guards.scorers.base import ScorerError
from guards.scorers.http_service import HttpScorer

SECRET = "SECRETkey0123"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_errors_name_the_url_without_its_secrets() -> None:
    url = f"http://user:{SECRET}@127.0.0.1:{_closed_port()}/score?api_key={SECRET}"
    scorer = HttpScorer(url=url, retries=0)
    with pytest.raises(ScorerError) as err:
        scorer.score("context", "response")
    message = str(err.value)
    assert SECRET not in message
    assert "user:***@127.0.0.1" in message and "/score?***" in message


def test_repr_hides_the_secrets() -> None:
    scorer = HttpScorer(url=f"https://eval.example/score?key={SECRET}", token_env=None)
    assert SECRET not in repr(scorer) and SECRET not in str(scorer)
    assert "https://eval.example/score?***" in repr(scorer)
    assert scorer.url.endswith(SECRET)  # the real URL is still what it calls


def test_a_bad_url_is_named_without_its_secrets() -> None:
    with pytest.raises(ConfigError, match=r"scorer\.url") as err:
        HttpScorer(url=f"ftp://user:{SECRET}@host/score?key={SECRET}")
    assert SECRET not in str(err.value)
