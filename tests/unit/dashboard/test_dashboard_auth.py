"""Who may change anything (services/dashboard/auth.py): token in a header only, Host and Origin
checked, refusals counted against a per-client budget, commands rate-limited."""

from __future__ import annotations

import pytest

from services.dashboard import auth

TOKEN = "s3cr3t-token-0123456789abcdef"
SITE = auth.site("127.0.0.1", 8470)
LIMITS = auth.Limits(failures_per_min=3, commands_per_min=2)


def req(*, client="127.0.0.1", host="127.0.0.1:8470", origin="", authorization=f"Bearer {TOKEN}", token_header="",
        now_s=1000.0) -> auth.Request:
    return auth.Request(client=client, host=host, origin=origin, authorization=authorization,
                        token_header=token_header, now_s=now_s)


def verdict(r: auth.Request, window=None, token=TOKEN, where=SITE):
    return auth.check(LIMITS, window or auth.Window(), r, token, where)


class TestToken:
    def test_the_right_bearer_token_is_allowed(self):
        """Authorization: Bearer <token> from loopback, no Origin (curl): allowed."""
        v, _ = verdict(req())
        assert (v.allowed, v.status, v.reason) == (True, 0, "ok")

    def test_the_token_may_come_in_x_aegis_token(self):
        v, _ = verdict(req(authorization="", token_header=TOKEN))
        assert v.allowed

    @pytest.mark.parametrize("authorization,reason", [
        ("", "missing_token"), ("Bearer ", "missing_token"), (f"Basic {TOKEN}", "missing_token"),
        ("Bearer wrong-token-0123456789", "wrong_token"), (f"Bearer {TOKEN}x", "wrong_token"),
        (f"Bearer {TOKEN[:-1]}", "wrong_token"),
    ])
    def test_missing_or_wrong_token_is_401(self, authorization, reason):
        """No token, another scheme, or a near miss: 401 with the reason, never the value."""
        v, _ = verdict(req(authorization=authorization))
        assert (v.status, v.reason) == (401, reason)
        assert TOKEN not in v.message

    def test_no_token_configured_refuses_everything_401(self):
        """A dashboard without a token is read-only: every command is refused."""
        v, _ = verdict(req(), token="")
        assert (v.status, v.reason) == (401, "no_token_configured")

    def test_presented_token_ignores_case_of_the_scheme(self):
        assert auth.presented_token(req(authorization=f"bearer  {TOKEN} ")) == TOKEN


class TestHostAndOrigin:
    def test_own_origin_is_allowed(self):
        """The page's own fetch sends Origin http://127.0.0.1:8470 (or localhost)."""
        for origin in ("http://127.0.0.1:8470", "http://localhost:8470"):
            v, _ = verdict(req(origin=origin))
            assert v.allowed, origin

    def test_another_origin_is_forbidden_even_with_the_token(self):
        """A page elsewhere cannot post here (and a token in its hands changes nothing)."""
        v, _ = verdict(req(origin="http://evil.example"))
        assert (v.status, v.reason) == (403, "bad_origin")

    def test_a_rebound_host_name_is_forbidden(self):
        """DNS rebinding: evil.example resolving to 127.0.0.1 sends Host evil.example:8470."""
        v, _ = verdict(req(host="evil.example:8470", origin="http://evil.example:8470"))
        assert (v.status, v.reason) == (403, "bad_host")

    def test_configured_origins_are_allowed(self):
        where = auth.site("127.0.0.1", 8470, ("https://aegis.example.org",))
        v, _ = verdict(req(origin="https://aegis.example.org"), where=where)
        assert v.allowed

    def test_a_wildcard_bind_accepts_any_host_but_only_its_own_origin(self):
        """Bound to 0.0.0.0 the name is unknown: Host is not checked, Origin must match it."""
        where = auth.site("0.0.0.0", 8470)
        ok, _ = verdict(req(host="10.1.2.3:8470", origin="http://10.1.2.3:8470"), where=where)
        bad, _ = verdict(req(host="10.1.2.3:8470", origin="http://other:8470"), where=where)
        assert ok.allowed and (bad.status, bad.reason) == (403, "bad_origin")

    def test_loopback_names(self):
        assert [auth.is_loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", "0.0.0.0", "10.0.0.1")] == [
            True, True, True, True, False, False]


class TestRateLimits:
    def test_refusals_exhaust_the_clients_budget_then_429_even_with_the_right_token(self):
        """Three wrong tokens in a minute: the fourth request is 429, whatever it carries."""
        w = auth.Window()
        for i in range(3):
            v, w = verdict(req(authorization="Bearer nope-nope-nope-nope", now_s=1000.0 + i), w)
            assert v.status == 401
        v, w = verdict(req(now_s=1003.0), w)
        assert (v.status, v.reason) == (429, "rate_limited")
        assert v.message == "too many refused requests from 127.0.0.1: wait 57 s"

    def test_the_budget_is_per_client_and_recovers_after_a_minute(self):
        """Another address is not affected; the same one is allowed again once its first refusal is 60 s old."""
        w = auth.Window()
        for i in range(3):
            _, w = verdict(req(authorization="", now_s=1000.0 + i), w)
        assert verdict(req(client="127.0.0.2", now_s=1003.0), w)[0].allowed
        assert verdict(req(now_s=1059.9), w)[0].status == 429
        assert verdict(req(now_s=1060.0), w)[0].allowed  # two of three refusals left in the window

    def test_429s_do_not_extend_the_lock(self):
        """Hammering while locked out adds nothing: the window ends on schedule."""
        w = auth.Window()
        for i in range(3):
            _, w = verdict(req(authorization="", now_s=1000.0), w)
        for i in range(50):
            _, w = verdict(req(authorization="", now_s=1010.0 + i * 0.5), w)
        assert verdict(req(now_s=1060.0), w)[0].allowed

    def test_accepted_commands_are_limited_per_minute(self):
        """commands_per_min accepted, then 429 too_many_commands (not counted as a refusal)."""
        w = auth.Window()
        assert verdict(req(now_s=1.0), w)[0].allowed
        _, w = verdict(req(now_s=1.0), w)
        _, w = verdict(req(now_s=2.0), w)
        v, w2 = verdict(req(now_s=3.0), w)
        assert (v.status, v.reason) == (429, "too_many_commands")
        assert w2.failures["127.0.0.1"] == ()
        assert verdict(req(now_s=61.5), w)[0].allowed
