"""Campaigns: many calls compared across apps, vantages, dates and the labels of a study."""

from analyzer.campaign.run import SCHEMA, Campaign, campaign

__all__ = ["SCHEMA", "Campaign", "campaign"]
