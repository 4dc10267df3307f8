"""Twin: Acme's id format, no adverts of its own (its locks are never heard)."""

from __future__ import annotations

from blelock.model import Advert, Sighting
from tests.acme.plugin import AcmePlugin


class TwinPlugin(AcmePlugin):
    name = "twin"
    title = "Twin"
    migrations = ()

    def parse_advert(self, advert: Advert) -> Sighting | None:
        return None


PLUGIN = TwinPlugin()
