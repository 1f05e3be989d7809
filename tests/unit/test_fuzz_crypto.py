"""Differential fuzzing: the OpenSSL-backed HChaCha20 against the round-by-round reference.

`crypto.hchacha20` derives HChaCha20 from one ChaCha20 block (see its docstring); the
pure-Python rounds it replaced stay as the reference, and the two must agree everywhere,
including nonces whose first word (ChaCha20's block counter) is at its extremes.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsroute.wireguard import crypto


@settings(max_examples=2_000, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(key=st.binary(min_size=32, max_size=32),
       nonce=st.one_of(st.binary(min_size=16, max_size=16),
                       st.binary(min_size=12, max_size=12).map(lambda b: b"\xff" * 4 + b),
                       st.binary(min_size=12, max_size=12).map(lambda b: bytes(4) + b)))
def test_hchacha20_matches_the_reference_rounds(key, nonce):
    assert crypto.hchacha20(key, nonce) == crypto._hchacha20_rounds(key, nonce)
