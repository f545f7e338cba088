"""web.api's own rules: the /machines ETag."""

from __future__ import annotations

from datetime import timedelta

import pytest

from releng_hardware.views import derived
from tests.conftest import seen

# Every way /machines is answered: from the index's views, the long way, a poll, lastseen rows,
# a page.
MACHINES_URLS = ("/machines", "/machines?problem=any", "/machines?fields=machine,datacenter,lastseen",
                 "/machines?fields=id,lastseen", "/machines?limit=1", "/machines?format=csv")


@pytest.mark.parametrize("url", MACHINES_URLS)
def test_a_new_release_never_answers_304_to_the_old_releases_etag(client, store, monkeypatch, url):
    seen(store, "t-linux64-ms-100", ago=timedelta(minutes=5))
    seen(store, "t-linux64-ms-101", ago=timedelta(hours=7))
    etag = client.get(url).headers["ETag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    # the same data, the same query, another release's code
    monkeypatch.setattr(derived, "release_digest", lambda: "0123456789abcdef")
    response = client.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 200
    assert response.headers["ETag"] != etag
