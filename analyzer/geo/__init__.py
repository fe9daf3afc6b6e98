"""Geolocation: embedded and user databases, special ranges, borders, vantage and plausibility."""

from analyzer.geo.annotate import annotate_flows
from analyzer.geo.borders import country_centroid, country_shapes, distance_to_country_km
from analyzer.geo.plausibility import check_plausible, min_distance_bound_km
from analyzer.geo.resolver import GeoResolver, GeoResult
from analyzer.geo.scopes import address_scope

__all__ = [
    "GeoResolver",
    "GeoResult",
    "address_scope",
    "annotate_flows",
    "check_plausible",
    "country_centroid",
    "country_shapes",
    "distance_to_country_km",
    "min_distance_bound_km",
]
