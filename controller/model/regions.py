"""Fly.io's region codes, kept as data in the repository with the date they were checked.

Desired-state files are checked against :data:`FLY_REGIONS` (a typo such as ``xyz`` or ``ams1``
is an error naming the closest codes); a file can set ``allow_unknown_regions: true`` for a
region newer than this list.

Source: Fly.io's region table, https://fly.io/docs/reference/regions/ (the codes of the
"Fly.io Regions" table), cross-checked with the enums of two client libraries that copy it
(fly-sdk 0.1.3 ``src/machines/regions.rs``, 35 codes; flytrap 0.2.1 ``Region``, 36 codes,
adding ``maa``, Chennai).  ``fly platform regions`` (flyctl) and ``GET /v1/platform/regions``
print the live list; Fly has since retired some regions for new machines, which the API
refuses with a 4xx at create time (existing machines there still list and update).
"""

from __future__ import annotations

__all__ = ["FLY_REGIONS", "REGIONS_AS_OF"]

REGIONS_AS_OF = "2024-12-01"
"""When :data:`FLY_REGIONS` was last compared with Fly's table."""

FLY_REGIONS: frozenset[str] = frozenset(
    {
        "ams",  # Amsterdam, Netherlands
        "arn",  # Stockholm, Sweden
        "atl",  # Atlanta, Georgia (US)
        "bog",  # Bogota, Colombia
        "bom",  # Mumbai, India
        "bos",  # Boston, Massachusetts (US)
        "cdg",  # Paris, France
        "den",  # Denver, Colorado (US)
        "dfw",  # Dallas, Texas (US)
        "ewr",  # Secaucus, NJ (US)
        "eze",  # Ezeiza, Argentina
        "fra",  # Frankfurt, Germany
        "gdl",  # Guadalajara, Mexico
        "gig",  # Rio de Janeiro, Brazil
        "gru",  # Sao Paulo, Brazil
        "hkg",  # Hong Kong
        "iad",  # Ashburn, Virginia (US)
        "jnb",  # Johannesburg, South Africa
        "lax",  # Los Angeles, California (US)
        "lhr",  # London, United Kingdom
        "maa",  # Chennai, India
        "mad",  # Madrid, Spain
        "mia",  # Miami, Florida (US)
        "nrt",  # Tokyo, Japan
        "ord",  # Chicago, Illinois (US)
        "otp",  # Bucharest, Romania
        "phx",  # Phoenix, Arizona (US)
        "qro",  # Queretaro, Mexico
        "scl",  # Santiago, Chile
        "sea",  # Seattle, Washington (US)
        "sin",  # Singapore
        "sjc",  # San Jose, California (US)
        "syd",  # Sydney, Australia
        "waw",  # Warsaw, Poland
        "yul",  # Montreal, Canada
        "yyz",  # Toronto, Canada
    }
)
"""Every region code of Fly's table as of :data:`REGIONS_AS_OF`."""
