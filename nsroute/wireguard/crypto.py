"""The primitives WireGuard names: BLAKE2s hash/MAC, HMAC-BLAKE2s, HKDF, (X)ChaCha20-Poly1305, X25519.

Everything the handshake needs is a pure function here, so known-answer vectors can test it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

KEY_LEN = 32
TAG_LEN = 16


def hash_(*parts: bytes) -> bytes:
    h = hashlib.blake2s()
    for p in parts:
        h.update(p)
    return h.digest()


def mac(key: bytes, data: bytes) -> bytes:
    """Keyed BLAKE2s with a 16-byte digest (MAC1, MAC2, cookies)."""
    return hashlib.blake2s(data, key=key, digest_size=16).digest()


def hmac_(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2s).digest()


def kdf(chaining_key: bytes, data: bytes, n: int) -> list[bytes]:
    """HKDF over HMAC-BLAKE2s returning n 32-byte outputs."""
    prk = hmac_(chaining_key, data)
    out: list[bytes] = []
    prev = b""
    for i in range(1, n + 1):
        prev = hmac_(prk, prev + bytes([i]))
        out.append(prev)
    return out


def nonce(counter: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack("<Q", counter)


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, ad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(nonce(counter), plaintext, ad)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, ad: bytes) -> bytes:
    """Raises cryptography.exceptions.InvalidTag on a bad tag."""
    return ChaCha20Poly1305(key).decrypt(nonce(counter), ciphertext, ad)


_SIGMA = struct.unpack("<4I", b"expand 32-byte k")
_MASK = 0xFFFFFFFF


def _rotl(v: int, c: int) -> int:
    return ((v << c) & _MASK) | (v >> (32 - c))


def _quarter(s: list[int], a: int, b: int, c: int, d: int) -> None:
    s[a] = (s[a] + s[b]) & _MASK
    s[d] = _rotl(s[d] ^ s[a], 16)
    s[c] = (s[c] + s[d]) & _MASK
    s[b] = _rotl(s[b] ^ s[c], 12)
    s[a] = (s[a] + s[b]) & _MASK
    s[d] = _rotl(s[d] ^ s[a], 8)
    s[c] = (s[c] + s[d]) & _MASK
    s[b] = _rotl(s[b] ^ s[c], 7)


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 subkey derivation (draft-irtf-cfrg-xchacha); only cookie replies use it.

    Computed from one ChaCha20 block by OpenSSL: a block is the permuted state plus the
    initial state, and HChaCha20 is words 0-3 and 12-15 of the permuted state, so the
    initial words (the constants and the 16-byte input, which ChaCha20 takes as counter
    and nonce) are subtracted again. Every cookie reply needs one, and a handshake flood
    asks for thousands per second: the pure-Python rounds (`_hchacha20_rounds`, kept as
    the reference) cost close to a millisecond each.
    """
    enc = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor()
    block = struct.unpack("<16I", enc.update(bytes(64)))
    init = _SIGMA + struct.unpack("<4I", nonce16)
    out = [(b - i) & _MASK for b, i in zip(block[0:4] + block[12:16], init, strict=True)]
    return struct.pack("<8I", *out)


def _hchacha20_rounds(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 written out round by round, the reference for `hchacha20`."""
    s = list(_SIGMA) + list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))
    for _ in range(10):
        _quarter(s, 0, 4, 8, 12)
        _quarter(s, 1, 5, 9, 13)
        _quarter(s, 2, 6, 10, 14)
        _quarter(s, 3, 7, 11, 15)
        _quarter(s, 0, 5, 10, 15)
        _quarter(s, 1, 6, 11, 12)
        _quarter(s, 2, 7, 8, 13)
        _quarter(s, 3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def xaead_encrypt(key: bytes, nonce24: bytes, plaintext: bytes, ad: bytes) -> bytes:
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).encrypt(b"\x00" * 4 + nonce24[16:], plaintext, ad)


def xaead_decrypt(key: bytes, nonce24: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    sub = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(sub).decrypt(b"\x00" * 4 + nonce24[16:], ciphertext, ad)


class LowOrderPoint(ValueError):
    """The peer's public key (or ephemeral) gives an all-zero shared secret."""


def dh(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as e:  # cryptography refuses all-zero results
        raise LowOrderPoint(str(e)) from None


def private_from_bytes(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def public_of(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes_raw()
