"""Data files shipped with confscope: signatures, regions, embedded geolocation data."""
