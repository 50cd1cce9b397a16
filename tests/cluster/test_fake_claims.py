"""What the ``_kubeapi`` package documentation claims, and where each claim is held to
kube-apiserver: a differential row (test_fake_vs_real*.py, each row names its claim) or,
for what has no real counterpart, the reason it is not compared (``NOT_COMPARED``).

These checks need no control plane: they read the docstring and the row tables. Every
bullet of "Served" and of "What the official client does with these answers" must hold
at least one claim that a row checks or that ``NOT_COMPARED`` explains; every claim must
be in the docstring, word for word (whitespace aside), so an edit to one shows in the
other.
"""

from __future__ import annotations

import re

import pytest

from dnsbalance.testing import _kubeapi

from .sides import Row
from .test_fake_vs_real import ROWS as OBJECT_ROWS
from .test_fake_vs_real_watch import ROWS as WATCH_ROWS

ROWS: list[Row] = [*OBJECT_ROWS, *WATCH_ROWS]

# Claims no row compares, and why.
NOT_COMPARED: dict[str, str] = {
    ":meth:`cut_watches` ends open streams now": (
        "a fault the test injects; a real server ends streams on its own schedule"
    ),
    "Faults: :meth:`fail_next`": "fault injection: the fake's own knobs",
    "Order per request": (
        "delay and injected failures are the fake's own; that authentication comes before "
        "authorization shows in rows 401 and 403 (a wrong token is 401 on any path)"
    ),
    "Store helpers (:meth:`put`": "the fake's own API for tests",
    ":meth:`rotate_token`/:meth:`set_tokens` act at once": (
        "token rotation is the fake's knob; the 401 body is row 401's"
    ),
    "when a stream ends cleanly it calls again from the last resourceVersion it saw": (
        "client-side, and only without timeoutSeconds: an unbounded watch on the real "
        "server (its own timeout is 30-60 min); the clean end it reacts to is row "
        "watch-timeout's"
    ),
    "An HTTP 410 (``expired_as_http_410``)": (
        "kube-apiserver 1.37 answers an expired watch with 200 and an ERROR event (row "
        "watch-expired); the HTTP 410 is a fault for clients to survive"
    ),
    "An abrupt cut raises": "a fault (cut_watches): nothing to compare it with",
    "BOOKMARK events reach the caller with ``object`` left a dict": (
        "the client's handling; the bookmark object itself is compared (rows "
        "watch-bookmarks-flag, watch-bookmark-before-timeout)"
    ),
}
# Which row checks a claim of the official-client section that a row in its own words
# holds (the rows name the Served claim they hold first).
ALSO_CHECKED: dict[str, str] = {
    "A 401/403 on a watch raises ``ApiException`` from the first call": "403",
}


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


DOC = _words(_kubeapi.__doc__ or "")


def _bullets(heading: str) -> list[str]:
    """The bullets of one section of the docstring, each as one line of words."""
    text = _kubeapi.__doc__ or ""
    start = text.index(f"\n{heading}\n")
    body = text[start + len(heading) + 2 :].split("\n", 1)[1]
    end = re.search(r"\n\S[^\n]*\n[-=]{3,}\n", body)
    section = body[: end.start()] if end else body
    return [_words(b) for b in re.split(r"\n(?=- )", "\n" + section) if b.strip().startswith("- ")]


def _claims() -> list[str]:
    return [_words(r.claim) for r in ROWS] + [_words(c) for c in (*NOT_COMPARED, *ALSO_CHECKED)]


def test_rows_have_unique_ids() -> None:
    ids = [r.id for r in ROWS]
    assert sorted(ids) == sorted(set(ids))


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id) for r in ROWS])
def test_each_row_names_a_claim_of_the_docstring(row: Row) -> None:
    assert _words(row.claim) in DOC


@pytest.mark.parametrize("claim", [*NOT_COMPARED, *ALSO_CHECKED])
def test_each_uncompared_claim_is_in_the_docstring(claim: str) -> None:
    assert _words(claim) in DOC
    if claim in ALSO_CHECKED:
        assert ALSO_CHECKED[claim] in {r.id for r in ROWS}


@pytest.mark.parametrize(
    "heading", ["Served", "What the official client (kubernetes 37) does with these answers"]
)
def test_every_bullet_is_compared_or_says_why_not(heading: str) -> None:
    bullets = _bullets(heading)
    assert len(bullets) >= 5
    claims = _claims()
    uncovered = [b[:100] for b in bullets if not any(c in b for c in claims)]
    assert uncovered == []


def mapping() -> list[tuple[str, str, str]]:
    """(claim, how it is checked, where) for every claim: the table a reader wants."""
    rows = [(_words(r.claim), "row", r.id) for r in ROWS]
    skipped = [(_words(c), "not compared", why) for c, why in NOT_COMPARED.items()]
    return rows + skipped
