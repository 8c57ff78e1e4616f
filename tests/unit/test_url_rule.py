"""The one URL rule (`url_problem`): what it refuses, and that it never quotes a credential."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from falco_forwarder.config import MAX_URL_CHARS, url_problem

# Printable ASCII, unencoded delimiters included: what an operator may paste as a password.
PASSWORDS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)


@given(password=PASSWORDS, port=st.sampled_from(["", ":0", ":8443", ":99999", ":x"]))
def test_no_credential_ever_appears_in_the_reason(password: str, port: str):
    problem = url_problem(f"https://Zq9user:Zq9{password}@alerts.example.com{port}/falco")

    assert "Zq9" not in problem


@given(password=PASSWORDS)
def test_an_accepted_url_is_posted_to_the_host_the_operator_wrote(password: str):
    url = f"https://alice:{password}@alerts.example.com/falco"

    if url_problem(url) == "":
        assert urlsplit(url).hostname == "alerts.example.com"


@pytest.mark.parametrize(
    "url",
    [
        "http://alerts.example.com/falco",
        "https://alice:s%2Fcret@alerts.example.com:8443/falco?x=1",
        "HTTP://[fd00::1]:65535/",
        "http://10.0.0.1:1/" + "a" * (MAX_URL_CHARS - 19),
    ],
)
def test_good_urls_pass(url: str):
    assert url_problem(url) == ""


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h:0/", "the URL's port must be 1 to 65535, not 0"),
        ("http://h:65536/", "the URL's host or port is malformed"),
        ("http://h/" + "a" * MAX_URL_CHARS, f"the URL is {MAX_URL_CHARS + 9} characters long"),
        ("http://h/\tx", "the URL must be visible ASCII"),
        ("http://h/é", "the URL must be visible ASCII"),
        ("http:///x", "the URL has no host"),
        ("http://alice:2024/Secr3t@graylog:12201/gelf", "the URL has an '@' after its host"),
        ("http://alice:99?x@graylog/", "the URL has an '@' after its host"),
        ("ftp://h/", "only http:// and https:// URLs are accepted (got scheme 'ftp')"),
        ("alice:s3cret@h/", "only http:// and https:// URLs are accepted (got no scheme)"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, problem: str):
    assert url_problem(url).startswith(problem)
