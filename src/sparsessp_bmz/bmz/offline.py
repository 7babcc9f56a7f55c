"""Keep bioimageio.spec from asking GitHub about accounts while we build or test a package.

bioimageio.spec checks every `github_user` of an author or maintainer with a request to
api.github.com whenever it performs IO checks (`validate_github_user` in
bioimageio.spec `_internal/field_validation.py`), and `bioimageio.core.test_model` always turns
IO checks on. Without a network that request raises `httpx.ConnectError`, which fails the whole
test. It skips the request for names in its module-level `KNOWN_GITHUB_USERS` set, so offline we
put the package's names there for the duration of the work and say in the report that the
accounts were not checked (`validate --online` checks them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any


def github_users(rdf: dict[str, Any]) -> list[str]:
    """Every `github_user` of the authors and maintainers of a raw RDF."""
    people = list(rdf.get("authors") or []) + list(rdf.get("maintainers") or [])
    return [
        str(person["github_user"])
        for person in people
        if isinstance(person, dict) and person.get("github_user")
    ]


@contextmanager
def accounts_unchecked(users: Iterable[str]) -> Iterator[None]:
    """Within the block bioimageio.spec treats `users` as known and makes no request for them."""
    from bioimageio.spec._internal import field_validation

    known: set[str] = field_validation.KNOWN_GITHUB_USERS
    added = {user.lower() for user in users} - known
    known |= added
    try:
        yield
    finally:
        known -= added
