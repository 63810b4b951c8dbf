"""Compliance evidence for reviewers: signed bundles that can be checked offline.

``bundle.export`` writes the zip (sheet PDF/XLSX, raw reports, alerts, registration, signed manifest);
``verify.verify_bundle`` checks one with nothing but the public key. ``keys`` holds the collector's
Ed25519 signing key; ``sheet`` is the one adapter to the scoring engine.
"""
