"""One analysed session: the scan's flows given apps, roles, names and places, and the tables
the report contract names (countries, key exchange, media, policy, findings).

- `build`: `analyze()` and the `Session` object.
- `flowtable`: the flow table alone, as `confscope flows` writes it.
- `policy`, `findings`: the geofence check and what a reader must know.
- `anonymize`: keyed pseudonyms of the capturing side; `multifile`: rotated or split captures.
"""
