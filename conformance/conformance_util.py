"""Helpers for the upstream-conformance rewrites: raw HTTP with the Python
client's TLS settings and credentials, a streaming watch reader that several
tests can run at once, and polling.

Raw requests are used where the typed client cannot say what a test needs:
bodies with duplicate JSON keys, `Warning` headers, the `Status` of a 410,
discovery documents chosen by `Accept`.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional
from urllib.parse import urlencode

import urllib3

TIMEOUT = 30  # seconds, for every request


@dataclass
class Resp:
    status: int
    headers: urllib3.HTTPHeaderDict
    data: bytes

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    def json(self):
        try:
            return json.loads(self.data)
        except json.JSONDecodeError as e:
            raise AssertionError(f"not JSON ({e}), HTTP {self.status}:\n{self.text[:2000]}") \
                from None

    @property
    def warnings(self) -> List[str]:
        """The texts of the `Warning: 299 - "..."` headers, unescaped."""
        out = []
        for value in self.headers.getlist("Warning"):
            for m in re.finditer(r'\d{3} \S+ "((?:[^"\\]|\\.)*)"', value):
                out.append(re.sub(r"\\(.)", r"\1", m.group(1)))
        return out

    def describe(self) -> str:
        return f"HTTP {self.status}, headers {dict(self.headers)}\n{self.text[:3000]}"


class Http:
    """Requests made through the ApiClient's own urllib3 pool (its CA, client
    certificate, proxy) with its bearer token, if any."""

    def __init__(self, api):
        self.api = api
        self.host = api.configuration.host.rstrip("/")
        self.pool = api.rest_client.pool_manager

    def headers(self, extra: Optional[dict] = None) -> dict:
        h = dict(extra or {})
        self.api.update_params_for_auth(h, [], ["BearerToken"])
        return h

    def url(self, path: str, query=None) -> str:
        url = self.host + path
        if query:
            url += "?" + urlencode(query, doseq=True)
        return url

    def request(self, method: str, path: str, body=None, *, query=None,
                content_type: str = "application/json",
                accept: str = "application/json", timeout: float = TIMEOUT) -> Resp:
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode()
        r = self.pool.request(method, self.url(path, query), body=body,
                              headers=self.headers(headers),
                              timeout=urllib3.Timeout(total=timeout), retries=False)
        return Resp(r.status, r.headers, r.data)

    def get(self, path: str, **kw) -> Resp:
        return self.request("GET", path, **kw)

    def ok(self, method: str, path: str, body=None, **kw):
        """The JSON body of a 2xx answer, else an AssertionError that shows it."""
        r = self.request(method, path, body, **kw)
        assert 200 <= r.status < 300, f"{method} {path}: " + r.describe()
        return r.json()


class Watcher:
    """One watch request, read by a background thread into a queue.

    `path` is a collection (e.g. /api/v1/namespaces/x/configmaps); `params`
    become the query (watch=1 and a server-side timeout are added).
    """

    def __init__(self, http: Http, path: str, **params):
        query = {"watch": "1", "timeoutSeconds": "120", "allowWatchBookmarks": "false"}
        query.update({k: str(v) for k, v in params.items() if v is not None})
        self.desc = f"watch {path}?{urlencode(query)}"
        self.events: List[dict] = []  # everything taken out of the queue so far
        self._q: "queue.Queue" = queue.Queue()
        self._resp = http.pool.request(
            "GET", http.url(path, query), headers=http.headers({"Accept": "application/json"}),
            preload_content=False, retries=False,
            timeout=urllib3.Timeout(connect=TIMEOUT, read=None))
        if self._resp.status != 200:
            body = self._resp.read().decode(errors="replace")
            self._resp.release_conn()
            raise AssertionError(f"{self.desc}: HTTP {self._resp.status}\n{body}")
        self._closed = False
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        try:
            for line in self._resp:
                line = line.strip()
                if line:
                    self._q.put(json.loads(line))
        except Exception as e:  # a closed socket when close() ran, else a real error
            if not self._closed:
                self._q.put({"type": "_READ_ERROR", "object": repr(e)})
        finally:
            self._q.put({"type": "_END"})

    def next(self, timeout: float = 15) -> dict:
        """The next event that is not a BOOKMARK."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                ev = self._q.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise AssertionError(
                    f"{self.desc}: no event within {timeout}s; got so far:\n"
                    + summarize(self.events)) from None
            if ev.get("type") == "BOOKMARK":
                continue
            if ev.get("type") in ("_END", "_READ_ERROR"):
                self._q.put(ev)  # stays the answer to every later call
                raise AssertionError(f"{self.desc}: stream ended ({ev}); got so far:\n"
                                     + summarize(self.events))
            self.events.append(ev)
            return ev

    def take(self, n: int, timeout: float = 15) -> List[dict]:
        return [self.next(timeout) for _ in range(n)]

    def expect_quiet(self, seconds: float = 1.0):
        """Nothing (but bookmarks) arrives within `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                ev = self._q.get(timeout=left)
            except queue.Empty:
                return
            if ev.get("type") == "BOOKMARK":
                continue
            if ev.get("type") in ("_END", "_READ_ERROR"):
                self._q.put(ev)
                return
            self.events.append(ev)
            raise AssertionError(f"{self.desc}: unexpected event {brief(ev)}; all:\n"
                                 + summarize(self.events))

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            self._resp.shutdown()
        except Exception:
            pass
        self._thread.join(timeout=5)
        try:
            self._resp.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def brief(ev: dict) -> tuple:
    obj = ev.get("object") or {}
    if not isinstance(obj, dict):
        return (ev.get("type"), obj)
    meta = obj.get("metadata") or {}
    return (ev.get("type"), meta.get("name"), meta.get("resourceVersion"),
            obj.get("data"), meta.get("labels"))


def summarize(events: Iterable[dict]) -> str:
    return "\n".join(f"  {brief(e)}" for e in events) or "  (none)"


def wait_for(what: str, check: Callable[[], object], timeout: float = 30,
             interval: float = 0.1):
    """Call `check` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} "
                                 f"(last check: {last!r})")
        time.sleep(interval)
