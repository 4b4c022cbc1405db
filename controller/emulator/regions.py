"""Which regions a machine or volume may be created in: Fly's public list, nothing else.

Fly refuses a create in a region it does not have with 422 Unprocessable Entity (a wrong region
``sg`` on create, fly-apps/terraform-provider-fly issue #126); the body text is not documented, so
the one below is chosen and names the region.  The list itself is shared data
(``controller.model.regions``, with its source and date).  A region string with control or other
non-printable characters is refused the same way before it can reach a log or a listing.
"""

from __future__ import annotations

from controller.emulator import apierrors
from controller.model.regions import DEPRECATED_REGIONS, FLY_REGIONS, REGIONS_AS_OF


def check_region(region: str) -> None:
    """422 unless ``region`` is one of Fly's current region codes."""
    if not region.isprintable():
        raise apierrors.generic(422, f"invalid region {region!r}: not a printable region code")
    if region in FLY_REGIONS:
        return
    if region in DEPRECATED_REGIONS:
        raise apierrors.generic(
            422, f'invalid region "{region}": Fly no longer offers this region for new machines'
        )
    raise apierrors.generic(
        422, f'invalid region "{region}": not a Fly.io region (as of {REGIONS_AS_OF})'
    )
