"""Identifier generation for the emulator, from one seeded ``random.Random`` and the injected clock.

Every id the emulator hands out (machine ids, 26-char version ULIDs, lease nonces, volume ids,
request ids, private IPs, generated names) comes from here, so a run with a fixed seed and a
``FakeClock`` produces byte-identical responses.  Formats follow FLY_API.md section 2:

* machine id: 14 lowercase hex characters (``3d8d413b29d089``);
* version / instance_id / event id: 26-character ULID in Crockford base32, time-ordered
  (48-bit millisecond timestamp from ``clock.now()`` + 80 random bits; strictly increasing within
  one generator even when the clock does not move, as the ULID spec's monotonic mode does);
* lease nonce: 12 lowercase hex characters (``5c35f65c9f95``, DOCS-LEASE example);
* volume id: ``vol_`` + 16 lowercase alphanumerics (``vol_4y5gkog8p5kj839r``, FLY_API.md 1.11);
* request id (``fly-request-id`` header): a ULID plus ``-<region>``.
"""

from __future__ import annotations

import hashlib
import random

from controller.clock import Clock

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VOLUME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_RANDOM_BITS = 80
_ADJECTIVES = (
    "aged", "billowing", "bitter", "black", "blue", "bold", "broken", "cold", "cool", "crimson",
    "damp", "dark", "dawn", "delicate", "divine", "dry", "empty", "falling", "fancy", "flat",
    "floral", "fragrant", "frosty", "gentle", "green", "hidden", "holy", "icy", "jolly", "late",
    "lingering", "little", "lively", "long", "lucky", "misty", "morning", "muddy", "nameless",
    "noisy", "odd", "old", "orange", "patient", "plain", "polished", "proud", "purple", "quiet",
    "rapid", "raspy", "red", "restless", "rough", "round", "royal", "shiny", "shy", "silent",
)  # fmt: skip
_NOUNS = (
    "bird", "breeze", "brook", "bush", "butterfly", "cherry", "cloud", "darkness", "dawn", "dew",
    "dream", "dust", "feather", "field", "fire", "firefly", "flower", "fog", "forest", "frog",
    "frost", "glade", "glitter", "grass", "haze", "hill", "lake", "leaf", "meadow", "moon",
    "morning", "mountain", "night", "paper", "pine", "pond", "rain", "resonance", "river", "sea",
    "shadow", "shape", "silence", "sky", "smoke", "snow", "snowflake", "sound", "star", "sun",
)  # fmt: skip


def encode_crockford(value: int, length: int) -> str:
    """Encode a non-negative integer as exactly ``length`` Crockford base32 characters."""
    chars = []
    for _ in range(length):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def image_digest(image: str) -> str:
    """A stable fake registry digest for an image reference (same image -> same digest)."""
    if "@sha256:" in image:
        return "sha256:" + image.split("@sha256:", 1)[1]
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


def token_identity(token: str) -> str:
    """The lease owner shown for a token, shaped like Fly's ``<id>@tokens.fly.io`` (1.7)."""
    return hashlib.sha256(token.encode()).hexdigest()[:8] + "@tokens.fly.io"


class IdGenerator:
    """Seeded source of every identifier; see the module docstring for the formats."""

    def __init__(self, rng: random.Random, clock: Clock) -> None:
        self._rng = rng
        self._clock = clock
        self._last_ms = -1
        self._last_random = 0
        self._issued: set[str] = set()

    def ulid(self) -> str:
        """A 26-char, time-ordered ULID; monotonic within this generator."""
        ms = max(int(self._clock.now() * 1000), 0) & ((1 << 48) - 1)
        if ms <= self._last_ms:
            ms = self._last_ms
            rand = (self._last_random + 1) & ((1 << _RANDOM_BITS) - 1)
        else:
            rand = self._rng.getrandbits(_RANDOM_BITS)
        self._last_ms, self._last_random = ms, rand
        return encode_crockford((ms << _RANDOM_BITS) | rand, 26)

    def _unique(self, make: str) -> str:
        # Collisions are astronomically unlikely; the set makes uniqueness a guarantee anyway.
        for _ in range(100):
            candidate = self._fresh(make)
            if candidate not in self._issued:
                self._issued.add(candidate)
                return candidate
        raise RuntimeError("could not generate a unique id")

    def _fresh(self, make: str) -> str:
        if make == "machine":
            return f"{self._rng.getrandbits(56):014x}"
        if make == "volume":
            return "vol_" + "".join(self._rng.choice(_VOLUME_ALPHABET) for _ in range(16))
        raise ValueError(make)

    def machine_id(self) -> str:
        """14 lowercase hex characters, unique within this emulator."""
        return self._unique("machine")

    def volume_id(self) -> str:
        """``vol_`` plus 16 lowercase alphanumerics, unique within this emulator."""
        return self._unique("volume")

    def nonce(self) -> str:
        """A 12-hex-character lease nonce."""
        return f"{self._rng.getrandbits(48):012x}"

    def cursor(self) -> str:
        """An opaque pagination cursor."""
        return f"{self._rng.getrandbits(128):032x}"

    def request_id(self, region: str) -> str:
        """The ``fly-request-id`` header value: a ULID plus the serving region."""
        return f"{self.ulid()}-{region}"

    def machine_name(self) -> str:
        """A generated ``adjective-noun-1234`` name, as Fly gives machines created without one."""
        adjective = self._rng.choice(_ADJECTIVES)
        noun = self._rng.choice(_NOUNS)
        return f"{adjective}-{noun}-{self._rng.randrange(1000, 10000)}"

    def private_ip(self, network: int) -> str:
        """A 6PN address in the org's ``fdaa:`` network."""
        a, b, c = (self._rng.getrandbits(16) for _ in range(3))
        return f"fdaa:0:{network:x}:a7b:{a:x}:{b:x}:{c:x}:2"

    def network_number(self) -> int:
        """The per-org number used in private IPs."""
        return self._rng.randrange(0x1000, 0xFFFF)

    def zone(self) -> str:
        """A 4-hex-character volume zone."""
        return f"{self._rng.getrandbits(16):04x}"
