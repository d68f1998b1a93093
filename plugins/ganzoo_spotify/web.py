"""Talking to the Web API and the image CDN: a spotipy client without its own retries, and one retry policy
(Retry-After on 429, bounded exponential backoff with jitter on 5xx, timeouts and dropped connections)."""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import requests
import spotipy
from spotipy.cache_handler import MemoryCacheHandler
from spotipy.oauth2 import SpotifyClientCredentials, SpotifyOauthError

from ganzoo import GanzooError

DEFAULT_API_URL = "https://api.spotify.com/v1/"
DEFAULT_TOKEN_URL = "https://accounts.spotify.com/api/token"
T = TypeVar("T")


class Transient(Exception):
    """A failure worth retrying; ``wait`` is the server's Retry-After in seconds, when it sent one."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


class RateLimited(GanzooError):
    """The API asked to wait longer than the policy allows: stop cleanly and let the user run again later."""


@dataclass
class RetryPolicy:
    attempts: int = 8
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 600.0
    stats: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.stats[key] += n

    def call(self, action: Callable[[], T], what: str, attempts: int | None = None) -> T:
        """Run ``action``, retrying on Transient; after the last attempt the Transient propagates."""
        attempts = attempts or self.attempts
        for attempt in range(attempts):
            try:
                self.count("requests")
                return action()
            except Transient as failure:
                if attempt == attempts - 1:
                    raise
                if failure.wait is not None:
                    if failure.wait > self.max_retry_after_s:
                        raise RateLimited(f"{what}: Spotify asks to wait {failure.wait:.0f} s (Retry-After); "
                                          "stopped here, run the same command again later to continue") from None
                    self.count("rate_limited")
                    delay = failure.wait
                else:
                    self.count("retried")
                    delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0)
                time.sleep(delay)
        raise AssertionError("unreachable")


def retry_after(headers) -> float | None:
    value = (headers or {}).get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def classify_status(status: int, headers, what: str) -> None:
    """Raise Transient for 429 and 5xx; other statuses are for the caller."""
    if status == 429:
        raise Transient(f"{what}: 429", retry_after(headers) or 1.0)
    if 500 <= status < 600:
        raise Transient(f"{what}: {status}", retry_after(headers))


class SpotifyAPI:
    """The few Web API calls the collector makes, each retried under one policy.

    spotipy's own retries are off (a plain session) so that 429, 5xx and timeouts meet one policy; its logger is
    silenced, since at debug level it prints request headers, which carry the credentials; its token cache is
    in memory, never a ``.cache`` file.
    """

    def __init__(self, policy: RetryPolicy, api_url: str = DEFAULT_API_URL, token_url: str = DEFAULT_TOKEN_URL,
                 timeout_s: float = 10.0):
        client_id = os.environ.get("SPOTIPY_CLIENT_ID")
        client_secret = os.environ.get("SPOTIPY_CLIENT_SECRET")
        if not client_id or not client_secret:
            raise GanzooError("set SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET (a Spotify app's client "
                              "credentials, from developer.spotify.com) in the environment")
        logging.getLogger("spotipy").setLevel(logging.CRITICAL)
        session = requests.Session()
        auth = SpotifyClientCredentials(client_id, client_secret, requests_session=session,
                                        requests_timeout=timeout_s, cache_handler=MemoryCacheHandler())
        auth.OAUTH_TOKEN_URL = token_url
        self.client = spotipy.Spotify(auth_manager=auth, requests_session=session, requests_timeout=timeout_s)
        self.client.prefix = api_url if api_url.endswith("/") else api_url + "/"
        self.policy = policy

    def get(self, path: str, **params) -> dict:
        """GET ``path`` (relative to the API URL); HTTP errors other than 429/5xx raise SpotifyException."""
        def attempt():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return self.client._get(path, **params)
            except spotipy.SpotifyException as error:
                classify_status(error.http_status, error.headers, path)
                raise
            except SpotifyOauthError as error:
                response = getattr(error.__context__, "response", None)
                if response is not None:
                    classify_status(response.status_code, response.headers, "token")
                reason = str(error.error or "no reason given")[:80]
                raise GanzooError(f"Spotify refused the client credentials ({reason}); "
                                  "check SPOTIPY_CLIENT_ID and SPOTIPY_CLIENT_SECRET") from None
            except (requests.Timeout, requests.ConnectionError) as error:
                raise Transient(f"{path}: {type(error).__name__}") from None
        try:
            return self.policy.call(attempt, path.split("?")[0])
        except Transient as failure:
            raise GanzooError(f"Spotify Web API still failing after {self.policy.attempts} attempts ({failure}); "
                              "what was collected is kept, run the same command again to continue") from None


SPOTIFY_ID = re.compile(r"^[0-9A-Za-z]{22}$")
SPOTIFY_REFERENCE = re.compile(r"(?:spotify:(\w+):|open\.spotify\.com/(?:intl-\w+/)?(\w+)/)([0-9A-Za-z]{22})")


def spotify_id(text: str, kind: str) -> str | None:
    """The 22-character id in a bare id, a ``spotify:KIND:ID`` URI or an open.spotify.com URL; else None."""
    text = text.strip()
    if SPOTIFY_ID.match(text):
        return text
    match = SPOTIFY_REFERENCE.search(text)
    if match and (match.group(1) or match.group(2)) == kind:
        return match.group(3)
    return None
