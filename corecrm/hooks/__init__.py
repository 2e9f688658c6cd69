"""Hook specifications: the public API for plugins.

One module per lifecycle stage, each holding one spec class
(kedro's layout), registered together by :func:`all_spec_classes`:

==================  ===========================================================
module              hooks
==================  ===========================================================
``acquisition``     ``crm_capture_formats``, ``crm_capture_sources``, ``crm_import_formats``
``filtering``       ``crm_verify_leads``, ``crm_screen_leads``, ``crm_match_leads``, ``crm_enrich_leads``
``scoring``         ``crm_score_leads``, ``crm_qualify_leads``
``distribution``    ``crm_route_leads``
``nurturing``       ``crm_message_channels``, ``crm_enrol_leads``
``analytics``       ``crm_reports``, ``crm_customer_values``
``events``          ``crm_leads_captured``, ``crm_stage_changed``, ``crm_leads_assigned``,
                    ``crm_lead_converted``, ``crm_deal_closed``, ``crm_leads_quarantined``
``extension``       ``crm_plugin_settings``, ``crm_cli_commands``, ``crm_db_schema``,
                    ``crm_config_warnings``
==================  ===========================================================

Naming grammar: decision hooks are ``crm_<verb>_leads`` and take a batch;
registration hooks are ``crm_<plural noun>`` and return typed records;
observer hooks are ``crm_<noun>_<past participle>``.

Plugins import the marker from here::

    from corecrm.hooks import hookimpl

    @hookimpl
    def crm_score_leads(leads, settings):
        ...
"""

from __future__ import annotations

import pluggy

#: The project name pluggy uses to match specs and implementations.
PROJECT_NAME = "corecrm"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Mark a plugin function as the implementation of a hook.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Version of the hook API. Plugins may compare it; it only grows.
API_VERSION = (0, 1)


def all_spec_classes() -> list[type]:
    from corecrm.hooks import acquisition, analytics, distribution, events, extension, filtering, nurturing, scoring

    return [
        acquisition.AcquisitionSpecs,
        filtering.FilteringSpecs,
        scoring.ScoringSpecs,
        distribution.DistributionSpecs,
        nurturing.NurturingSpecs,
        analytics.AnalyticsSpecs,
        events.EventSpecs,
        extension.ExtensionSpecs,
    ]


__all__ = ["API_VERSION", "PROJECT_NAME", "all_spec_classes", "hookimpl", "hookspec"]
