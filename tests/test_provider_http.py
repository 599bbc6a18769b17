"""The provider HTTP choke point reads the environment's proxy and CA settings as requests
does, once per host (calls/providers/http.py)."""

from __future__ import annotations

from calls.providers.http import ProviderHTTP


def _client() -> ProviderHTTP:
    return ProviderHTTP(provider="callkaro", headers={}, connect_timeout=1, read_timeout=1)


def _settings(client: ProviderHTTP, url: str) -> dict:
    return client.session.merge_environment_settings(url, {}, None, None, None)


def test_it_sends_through_the_proxy_the_environment_names(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = _settings(_client(), "https://api.callkaro.ai/call/outbound")
    assert settings["proxies"]["https"] == "http://proxy.internal:3128"


def test_it_leaves_out_the_proxy_for_hosts_in_no_proxy(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "api.callkaro.ai")
    client = _client()
    assert "https" not in _settings(client, "https://api.callkaro.ai/call/outbound")["proxies"]
    assert _settings(client, "https://api.vapi.ai/call")["proxies"]["https"] == "http://proxy.internal:3128"


def test_it_verifies_with_the_ca_bundle_the_environment_names(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/company-ca.pem")
    assert (
        _settings(_client(), "https://api.callkaro.ai/call/outbound")["verify"] == "/etc/ssl/company-ca.pem"
    )


def test_it_reads_the_environment_once_per_host(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = _client()
    _settings(client, "https://api.callkaro.ai/call/outbound")
    monkeypatch.setenv("HTTPS_PROXY", "http://other.internal:3128")
    assert _settings(client, "https://api.callkaro.ai/call/outbound")["proxies"]["https"] == (
        "http://proxy.internal:3128"
    )


def test_it_does_not_replace_the_providers_authorization_with_a_netrc_entry(monkeypatch, tmp_path):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.vapi.ai login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = ProviderHTTP(
        provider="vapi", headers={"Authorization": "Bearer key"}, connect_timeout=1, read_timeout=1
    )
    import requests

    prepared = client.session.prepare_request(requests.Request("POST", "https://api.vapi.ai/call", json={}))
    assert prepared.headers["Authorization"] == "Bearer key"
