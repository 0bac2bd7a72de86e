"""core.redact: one URL redactor, two modes (alert URLs hide query values, tracking URIs keep
them); both must never show a password."""

from __future__ import annotations

import pytest

from core.redact import redact_url
from gateway.control.notifiers.base import check_url
from model_registry.errors import RegistryError, redact_uri


@pytest.mark.parametrize(("url", "hidden", "kept"), [
    ("https://hooks.example/services/T/B/X", "https://hooks.example/services/T/B/X",
     "https://hooks.example/services/T/B/X"),
    ("http://u:p4ss@h:8080/a?token=t0k&d=e#frag", "http://u:***@h:8080/a?***",
     "http://u:***@h:8080/a?token=t0k&d=e#frag"),
    ("http://u@h/x?t=1", "http://u@h/x?***", "http://u@h/x?t=1"),
    ("http://u:@h/x", "http://u:***@h/x", "http://u:***@h/x"),
    ("postgresql://u:pw@db/mlflow?sslmode=require", "postgresql://u:***@db/mlflow?***",
     "postgresql://u:***@db/mlflow?sslmode=require"),
    ("https://bob:s3cret@host:443/ml", "https://bob:***@host:443/ml",
     "https://bob:***@host:443/ml"),
])
def test_password_masked_and_query_hidden_unless_kept(url: str, hidden: str, kept: str) -> None:
    assert redact_url(url) == hidden
    assert redact_url(url, keep_query=True) == kept


def test_no_password_and_keep_query_is_the_url_unchanged() -> None:
    # Rebuilding would turn sqlite:////abs into sqlite://abs: a different database.
    for uri in ("sqlite:////tmp/x.db", "sqlite:///rel.db", "file:///tmp/mlruns", "databricks",
                "http://h/p?"):
        assert redact_url(uri, keep_query=True) == uri


def test_hidden_query_also_drops_the_fragment_and_an_empty_query() -> None:
    assert redact_url("http://h/p?#x") == "http://h/p"
    assert redact_url("http://h/p#x") == "http://h/p"


def test_empty_user_name_keeps_the_mark_only_when_the_query_is_hidden() -> None:
    assert redact_url("http://:secret@h/x") == "http://:***@h/x"
    assert redact_url("http://:secret@h/x", keep_query=True) == "http://h/x"


@pytest.mark.parametrize("url", ["http://u:s3cret@h/x?k=s3cret", "http://:s3cret@h:1/x#s3cret"])
def test_the_secret_never_survives_hiding(url: str) -> None:
    assert "s3cret" not in redact_url(url)


def test_callers_use_it() -> None:
    assert redact_uri("mysql://u:pw@db/x?a=1") == redact_url("mysql://u:pw@db/x?a=1",
                                                             keep_query=True)
    assert "u:***@db" in str(RegistryError("boom", tracking_uri="mysql://u:pw@db/x"))
    with pytest.raises(Exception, match=r"'ftp://u:\*\*\*@h/x\?\*\*\*'"):
        check_url("ftp://u:pw@h/x?k=v", "alerts[0].url")
