"""Fly.io's public region codes: where Machines and Volumes can be created today.

This is data, shared by everything that needs to tell a real region from a typo: the emulator
refuses a create in a region that is not listed here (Fly answers 422, see
``controller/emulator/regions.py``), and the desired-state validator can refuse the same codes
before any API call is made.  It imports nothing, so any layer may use it.

Source: Fly's documentation page "Regions" (https://fly.io/docs/reference/regions/, kept in the
superfly/docs repository as ``reference/regions.html.markerb``; the current table was read at commit
``0a0270832670b9e945f73f564f8d671ad98baa43``), which says to run ``fly platform regions`` for the
live list.  A third-party client (alchemy-run/alchemy ``packages/fly/src/Region.ts``, September
2026) lists the same 18 codes and notes that Fly has deprecated ``bom``; the docs page still lists
``bom``, so it stays in :data:`FLY_REGIONS`.

In 2025-2026 Fly shrank its region list.  An earlier version of the same docs page (commit
``b89806f062362e387d72392d9601b327e754cc6b``) listed 35 regions; the 17 no longer offered are in
:data:`DEPRECATED_REGIONS`.  Machines created there before still exist, but new ones cannot be
placed there.  The edge-only regions (``dxb``, ``ist``, ``mel``) never accepted Machines.

Fly adds and retires regions without notice: when ``fly platform regions`` disagrees with this
list, update it and :data:`REGIONS_AS_OF`.
"""

from __future__ import annotations

REGIONS_AS_OF = "2026-09-30"
"""The date the lists below were last checked against Fly's documentation."""

FLY_REGIONS: frozenset[str] = frozenset(
    {
        "ams",  # Amsterdam, Netherlands
        "arn",  # Stockholm, Sweden
        "bom",  # Mumbai, India (reported deprecated by Fly, still listed in the docs)
        "cdg",  # Paris, France
        "dfw",  # Dallas, Texas (US)
        "ewr",  # Secaucus, NJ (US)
        "fra",  # Frankfurt, Germany
        "gru",  # Sao Paulo, Brazil
        "iad",  # Ashburn, Virginia (US)
        "jnb",  # Johannesburg, South Africa
        "lax",  # Los Angeles, California (US)
        "lhr",  # London, United Kingdom
        "nrt",  # Tokyo, Japan
        "ord",  # Chicago, Illinois (US)
        "sin",  # Singapore
        "sjc",  # San Jose, California (US)
        "syd",  # Sydney, Australia
        "yyz",  # Toronto, Canada
    }
)
"""Regions where a Machine or Volume can be created."""

DEPRECATED_REGIONS: frozenset[str] = frozenset(
    {
        "atl",  # Atlanta, Georgia (US)
        "bog",  # Bogota, Colombia
        "bos",  # Boston, Massachusetts (US)
        "den",  # Denver, Colorado (US)
        "eze",  # Ezeiza, Argentina
        "gdl",  # Guadalajara, Mexico
        "gig",  # Rio de Janeiro, Brazil
        "hkg",  # Hong Kong
        "mad",  # Madrid, Spain
        "mia",  # Miami, Florida (US)
        "otp",  # Bucharest, Romania
        "phx",  # Phoenix, Arizona (US)
        "qro",  # Queretaro, Mexico
        "scl",  # Santiago, Chile
        "sea",  # Seattle, Washington (US)
        "waw",  # Warsaw, Poland
        "yul",  # Montreal, Canada
    }
)
"""Regions Fly listed before and no longer offers for new Machines (disjoint from FLY_REGIONS)."""
