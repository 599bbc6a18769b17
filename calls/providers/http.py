"""The one HTTP choke point every provider's request goes through.

It owns the session (keep-alive connections reused across calls), the timeouts, a bound on
the whole answer (``requests``' read timeout is per read, so a provider that trickles bytes
could otherwise hold a worker for ever), and the split of failures by whether the request
can have been acted on (see ``base``): that split is what keeps relevel from ringing a user
twice because an answer was lost.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from django.conf import settings
from requests.adapters import HTTPAdapter

from calls.logsafe import redact_phones

from .base import ProviderMaybePlacedError, ProviderNotSentError, ProviderPermanentError

# Answers larger than this are not a provider's JSON answer to "place a call".
MAX_ANSWER_BYTES = 1024 * 1024
# Refusals that say "not now" before acting: sending again later is safe.
NOT_SENT_STATUSES = frozenset({408, 425, 429, 503})


def threads_per_process() -> int:
    """A worker process's share of PROVIDER_MAX_CONCURRENCY (at least one): the calls it
    has in flight at once, and so the connections its sessions keep open."""
    return max(1, settings.PROVIDER_MAX_CONCURRENCY // settings.QUEUE_CONCURRENCY)


@dataclass(frozen=True)
class ProviderAnswer:
    status_code: int
    data: Any  # the decoded JSON, or None

    @property
    def message(self) -> str:
        """The provider's own explanation, if its answer has one (masked: it may quote the number)."""
        data = self.data
        if isinstance(data, dict):
            # "error_message": Retell's older error bodies.
            for key in ("message", "error_message", "error", "detail"):
                value = data.get(key)
                if isinstance(value, dict):
                    value = value.get("message")
                if isinstance(value, list):
                    value = "; ".join(map(str, value))
                if value:
                    return redact_phones(str(value))[:300]
        return "no message"


class _Session(requests.Session):
    """A session that reads the environment (proxies and NO_PROXY, the CA bundle) once per
    host, not on every request: requests looks up the proxy variables, walks os.environ and
    looks for ~/.netrc on each call, a tenth of a placing worker's CPU. ~/.netrc is not
    read at all: every provider authenticates with its own header, which a netrc entry for
    its host would replace."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False  # the environment is read below, once per host
        self._environment: dict[tuple[str, str], tuple[dict[str, str], str | None]] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        host = urlsplit(url)[:2]
        found = self._environment.get(host)
        if found is None:
            found = self._environment[host] = (
                requests.utils.get_environ_proxies(url, no_proxy=None),
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"),
            )
        environ_proxies, ca_bundle = found
        if proxies is not None and "no_proxy" in proxies:  # (not ours: read as requests does)
            environ_proxies = requests.utils.get_environ_proxies(url, no_proxy=proxies["no_proxy"])
        proxies = dict(proxies or {})
        for key, value in environ_proxies.items():
            proxies.setdefault(key, value)
        if verify is True or verify is None:
            verify = ca_bundle or verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)


class ProviderHTTP:
    def __init__(
        self,
        *,
        provider: str,
        headers: dict[str, str],
        connect_timeout: float,
        read_timeout: float,
        pool_size: int = 32,
    ) -> None:
        self.provider = provider
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.session = _Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"Content-Type": "application/json", **headers})

    @classmethod
    def from_settings(
        cls, *, provider: str, headers: dict[str, str], connect_timeout: float, read_timeout: float
    ) -> ProviderHTTP:
        """A session sized for this worker process's share of the calls in flight."""
        return cls(
            provider=provider,
            headers=headers,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            pool_size=threads_per_process(),
        )

    @property
    def total_timeout(self) -> float:
        """The longest one request may take, answer included."""
        return self.connect_timeout + self.read_timeout

    def post_json(self, url: str, body: dict[str, Any]) -> ProviderAnswer:
        """POST ``body``; the answer, or a ProviderNotSentError / ProviderMaybePlacedError.

        Status codes are left to the caller (``raise_for_status``): what a 4xx body means is
        each provider's business.
        """
        name = self.provider
        try:
            response = self.session.post(
                url, json=body, timeout=(self.connect_timeout, self.read_timeout), stream=True
            )
        except requests.ConnectTimeout as exc:
            raise ProviderNotSentError(f"{name} connect timeout") from exc
        except requests.ReadTimeout as exc:
            raise ProviderMaybePlacedError(f"{name} read timeout: sent, no answer") from exc
        except requests.ConnectionError as exc:
            if _never_connected(exc):
                raise ProviderNotSentError(f"{name} unreachable: {_cause_name(exc)}") from exc
            # The connection broke after the request went out: it may have been acted on.
            raise ProviderMaybePlacedError(
                f"{name} connection lost after sending: {_cause_name(exc)}"
            ) from exc
        except requests.RequestException as exc:
            raise ProviderNotSentError(f"{name} request not sent: {type(exc).__name__}") from exc
        try:
            raw = self._read_bounded(response)
        finally:
            response.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return ProviderAnswer(status_code=response.status_code, data=data)

    def _read_bounded(self, response: requests.Response) -> bytes:
        # read1 returns what has arrived (at least a byte), so the deadline is checked
        # between reads; read(n) would wait for n bytes, a trickle at a time.
        deadline = time.monotonic() + self.total_timeout
        chunks: list[bytes] = []
        size = 0
        try:
            while size <= MAX_ANSWER_BYTES:
                chunk = response.raw.read1(8192, decode_content=True)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if time.monotonic() > deadline:
                    raise ProviderMaybePlacedError(
                        f"{self.provider} answered too slowly (over {self.total_timeout:g} s)"
                    )
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise ProviderMaybePlacedError(f"{self.provider} answer cut off: {type(exc).__name__}") from exc
        return b"".join(chunks)

    def raise_for_status(self, answer: ProviderAnswer) -> None:
        """The shared reading of a status code: 2xx passes, the rest raises its kind."""
        code, name = answer.status_code, self.provider
        if 200 <= code < 300:
            return
        said = f"{name} HTTP {code}: {answer.message}"
        if code in NOT_SENT_STATUSES:
            raise ProviderNotSentError(said)
        if code >= 500:
            # 500, 502, 504...: the request reached something that may have acted on it.
            raise ProviderMaybePlacedError(said)
        raise ProviderPermanentError(said)


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the error happened while connecting (refused, DNS, TLS handshake): the
    request never left."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the real cause
    return isinstance(
        reason,
        urllib3.exceptions.NewConnectionError
        | urllib3.exceptions.NameResolutionError
        | urllib3.exceptions.ConnectTimeoutError
        | urllib3.exceptions.SSLError,
    ) or isinstance(exc, requests.exceptions.SSLError)


def _cause_name(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return type(reason).__name__ if isinstance(reason, Exception) else type(exc).__name__
