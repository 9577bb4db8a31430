"""Adapters between faceage and other frameworks, each in its own module.

Nothing is imported here: ``import faceage`` must never pull in a framework such as
Ray, so each adapter is imported by its full name, e.g. ``faceage.integrations.ray``.
"""
