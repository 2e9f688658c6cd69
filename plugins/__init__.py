"""Plugins bundled with corecrm (installed as ``corecrm_plugins``).

They are registered through the ``corecrm.plugins`` entry-point group, exactly
like third-party plugins; the core never imports them by name.
"""
